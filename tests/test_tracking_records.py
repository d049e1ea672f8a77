"""A child run in memory, then a record on disk (`initlab.tracking.records`): its epochs, its summary when it ends,
a record written whole, and the error a failed store becomes."""

import json
import os

import pytest

from initlab.tracking.layout import FAILURE_TAG, MAX_TAG_LENGTH
from initlab.tracking.records import ChildRun, Records, TrackerBase, remove_record
from initlab.tracking.store import TrackingLostError, TrackingUnavailableError


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


def finished(key, status="FINISHED"):
    run = ChildRun(key, {"scheme": key.split("/")[0]})
    run.add_epoch(1, {"val_accuracy": 0.9})
    run.finish(None, status)
    return run


def test_a_record_is_written_whole_beside_the_store_when_the_run_ends(tmp_path):
    run = finished("he/seed=0")
    run.files["init/diagnostics.md"] = b"| table |\n"
    records = Records(f"sqlite:///{tmp_path / 's.db'}", "tiny", "h1")
    stage = records.stage(run)  # no parent run yet: the record does not wait for the store
    assert stage.parent == records.attempt and records.attempt.parent == records.root
    assert records.root.parent == tmp_path / "pending" and records.attempt.name.endswith(f"-{os.getpid()}")
    assert sorted(p.name for p in stage.iterdir()) == ["artifacts", "run.json"]  # no run.json.partial left
    record = json.loads((stage / "run.json").read_text())
    assert (record["run_key"], record["status"], record["params"]) == ("he/seed=0", "FINISHED", {"scheme": "he"})
    assert ["val_accuracy", 0.9, 1] == record["metrics"][0][:3]
    assert (record["start_time"], record["end_time"]) == (run.start_time, run.end_time)  # its own times
    assert (stage / "artifacts" / "init" / "diagnostics.md").read_bytes() == b"| table |\n"
    other = Records(f"sqlite:///{tmp_path / 's.db'}", "another experiment", "h1")
    assert other.root != records.root  # a comparison is its spec and its experiment


def test_a_resume_finds_the_records_of_its_parent_and_of_attempts_that_died_before_theirs(tmp_path):
    uri = f"sqlite:///{tmp_path / 's.db'}"
    killed_early = Records(uri, "tiny", "h1")  # killed before its parent existed
    early = killed_early.stage(finished("he/seed=0"))
    mine = Records(uri, "tiny", "h1", parent_id="p1")
    kept = mine.stage(finished("he/seed=1"))
    mine.attempt.joinpath("cut__short").mkdir()  # a run killed while its record was written: no run.json
    elsewhere = Records(uri, "tiny", "h1", parent_id="p0")  # an older parent's: not this resume's
    other = elsewhere.stage(finished("glorot/seed=0"))
    resumed = Records(uri, "tiny", "h1")
    assert resumed.waiting("p1") == [early, kept]  # oldest attempt first
    assert not mine.attempt.joinpath("cut__short").exists()
    assert resumed.waiting("p9", every=True) == [early, kept, other]  # the store lost its parents: all of them
    remove_record(early)
    assert not killed_early.attempt.exists()  # an attempt without records is gone
    for stage in (kept, other):
        remove_record(stage)
    assert not resumed.root.exists()


def test_one_resume_at_a_time_and_no_resume_while_the_comparison_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 's.db'}"
    with Records(uri, "tiny", "h1").running(resume=False, what="tiny"):
        with Records(uri, "tiny", "h1").running(resume=False, what="tiny"):  # two comparisons, two parents: fine
            pass
        with pytest.raises(TrackingUnavailableError, match="tiny is running in another process .* --resume"):
            with Records(uri, "tiny", "h1").running(resume=True, what="tiny"):
                pass
    with Records(uri, "tiny", "h1").running(resume=True, what="tiny"):
        with pytest.raises(TrackingUnavailableError, match="tiny is being resumed in another process"):
            with Records(uri, "tiny", "h1").running(resume=False, what="tiny"):
                pass
        with Records(uri, "other", "h1").running(resume=True, what="other"):  # another comparison: its own lock
            pass


def test_a_record_that_cannot_be_written_is_said_and_nothing_half_written_stays(tmp_path):
    uri = f"sqlite:///{tmp_path / 's.db'}"
    records = Records(uri, "tiny", "h1")
    records.stage(finished("he/seed=0"))
    (records.attempt / "he__seed=1").write_text("")  # a file where the record goes: it cannot be written (as root too)
    assert records.stage(finished("he/seed=1")) is None
    assert list(records.unwritten) == ["he/seed=1"] and "FileExistsError" in records.unwritten["he/seed=1"]
    message = records.kept_message()
    assert str(records.root) in message and "1 finished run(s) could not be written to disk either" in message
    assert "he/seed=1" in message and not (records.attempt / "he__seed=1" / "run.json").exists()


def test_a_store_that_fails_says_what_happened():
    class Tracker(TrackerBase):
        uri = "sqlite:///tmp/store/s.db"

    error = Tracker().lost(OSError("disk full"))
    assert isinstance(error, TrackingLostError)
    assert str(error) == "the MLflow store sqlite:///tmp/store/s.db stopped working (OSError: disk full)."
    sql = str(Tracker().lost(OSError("(sqlite3.OperationalError) no such table [SQL: INSERT ...] " + "x" * 2000)))
    assert len(sql) < 300 and sql.endswith("...).")  # the statement and its parameters are not the message
