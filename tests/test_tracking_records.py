"""A child run in memory, then a record on disk (`initlab.tracking.records`): its epochs, its summary when it ends,
a record written whole, and the error a failed store becomes."""

import json

import pytest

from initlab.tracking.layout import FAILURE_TAG, MAX_TAG_LENGTH
from initlab.tracking.records import ChildRun, TrackerBase
from initlab.tracking.store import TrackingLostError


def test_a_run_keeps_its_epochs_in_order_and_gets_its_summary_when_it_finishes():
    run = ChildRun("he/seed=0", {"seed": 0, "scheme": "he"})
    assert run.params == {"seed": "0", "scheme": "he"} and run.status == "RUNNING"  # params as MLflow stores them
    run.add_epoch(2, {"val_accuracy": 0.7, "train_loss": 0.5})
    run.add_epoch(1, {"val_accuracy": 0.8, "train_loss": 0.9})
    assert run.curve("val_accuracy") == [0.8, 0.7] and run.curve("train_loss") == [0.9, 0.5]
    run.finish(None)
    summary = {(key, step): value for key, value, step, _ in run.metrics if key.endswith("_val_accuracy")}
    assert summary == {("final_val_accuracy", 2): 0.7, ("best_val_accuracy", 2): 0.8}
    assert run.status == "FINISHED" and run.end_time >= run.start_time


def test_a_failed_run_gets_its_reason_cut_to_a_tag_and_no_summary():
    run = ChildRun("he/seed=1", {})
    run.add_epoch(1, {"val_accuracy": 0.5})
    run.finish(None, "FAILED", "x" * 10_000)
    assert run.tags[FAILURE_TAG] == "x" * MAX_TAG_LENGTH
    assert not [key for key, *_ in run.metrics if key.endswith("_val_accuracy")]


class Records(TrackerBase):
    def __init__(self, folder):
        self.uri, self.parent_id = f"sqlite:///{folder / 's.db'}", "parent1"


def test_a_record_is_written_whole_beside_the_store(tmp_path):
    run = ChildRun("he/seed=0", {"scheme": "he"})
    run.files["init/diagnostics.md"] = b"| table |\n"
    run.add_epoch(1, {"val_accuracy": 0.9})
    run.finish(None)
    stage = Records(tmp_path).stage(run)
    assert stage == tmp_path / "pending" / "parent1" / "he__seed=0"
    assert sorted(p.name for p in stage.iterdir()) == ["artifacts", "run.json"]  # no run.json.partial left
    record = json.loads((stage / "run.json").read_text())
    assert (record["run_key"], record["status"], record["params"]) == ("he/seed=0", "FINISHED", {"scheme": "he"})
    assert ["val_accuracy", 0.9, 1] == record["metrics"][0][:3]
    assert (stage / "artifacts" / "init" / "diagnostics.md").read_bytes() == b"| table |\n"


def test_a_store_that_fails_says_where_the_finished_runs_wait():
    from pathlib import Path

    error = Records(Path("/tmp/store")).lost(OSError("disk full"))
    assert isinstance(error, TrackingLostError)
    assert "stopped working (OSError: disk full)" in str(error)
    assert "/tmp/store/pending/parent1" in str(error) and "--resume" in str(error)
    with pytest.raises(TrackingLostError):
        raise error
