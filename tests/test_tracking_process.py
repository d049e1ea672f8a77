"""The tracking process (`initlab.tracking.process`): started before TensorFlow loads, it makes a new store that the
comparison adopts, answers the tracker's requests, and when it dies the store counts as lost with nothing lost."""

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from initlab.tracking import ChildRun, Records, TrackingLostError, TrackingQueue, TrackingUnavailableError
from initlab.tracking.layout import PARENT_TAG
from initlab.tracking.process import RemoteTracker, start_tracking_process, take_tracking_process
from initlab.tracking.store import PREPARED_STORE_VARIABLE

pytestmark = pytest.mark.integration  # each test starts the process


def tracking_process(uri: str):
    """The tracking process that ``initlab compare --tracking-uri uri`` starts, and its connections."""
    started = start_tracking_process(uri)
    return started, take_tracking_process()


def test_the_tracking_process_makes_a_new_store_that_the_comparison_adopts(tmp_path):
    database = tmp_path / "s.db"
    uri = f"sqlite:///{database}"
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no process has now: a command killed while its store was made
    leftovers = [tmp_path / f".s.db.{dead.pid}.new{end}" for end in ("", ".partial", ".partial-journal")]
    live = tmp_path / ".s.db.1.new.partial"  # a command alive (pid 1 is) making its store now
    for path in (*leftovers, live):
        path.write_bytes(b"x")
    started, connections = tracking_process(uri)
    assert not any(path.exists() for path in leftovers) and live.exists()  # removed at the next start; not a live one's
    live.unlink()
    process, made = started.process, started.new_store
    assert Path(made).parent == tmp_path and not database.exists() and PREPARED_STORE_VARIABLE not in os.environ
    assert take_tracking_process() is None  # the connections go to one comparison
    tracker = RemoteTracker(*connections, uri, "adopted", spec_hash="x")
    assert database.exists() and not Path(made).exists()  # made there, renamed into place
    with sqlite3.connect(database) as db:  # an MLflow store, its schema migrated
        assert db.execute("select count(*) from alembic_version").fetchone() == (1,)
    assert MlflowClient(uri).get_experiment(tracker.experiment_id).name == "adopted"
    assert "tensorflow" not in Path(f"/proc/{process.pid}/maps").read_text()  # MLflow alone, no TensorFlow
    tracker.close()
    assert process.wait(timeout=60) == 0  # its requests ended: it ends
    # Nothing to make: an existing store, another store kind.
    for other in (uri, "http://127.0.0.1:1"):
        started, _ = tracking_process(other)
        assert started.new_store is None
        started.end()


def test_requests_made_in_the_tracking_process_write_the_runs_and_return_its_errors(tmp_path):
    uri = f"sqlite:///{tmp_path / 's.db'}"
    started, connections = tracking_process(uri)
    process = started.process
    tracker = RemoteTracker(*connections, uri, "remote", spec_hash="x")
    assert tracker.start_parent({"epochs": 1}, resume=False, run_name="parent") == {}
    assert tracker.parent_id is not None  # known here as well
    child = ChildRun("he/seed=0", {"scheme": "he"})
    child.add_epoch(1, {"val_accuracy": 0.5})
    child.finish(None)
    records = Records(uri, "remote", "x", tracker.parent_id)
    run = MlflowClient(uri).get_run(tracker.write_record(records.stage(child)))  # staged here, written there
    assert run.data.params == {"scheme": "he"} and run.data.metrics["final_val_accuracy"] == 0.5
    assert run.data.tags[PARENT_TAG] == tracker.parent_id and not records.root.exists()
    tracker.close()
    process.wait(timeout=60)
    # A store error there is the same error here.
    MlflowClient(uri).delete_experiment(tracker.experiment_id)
    started, connections = tracking_process(uri)
    with pytest.raises(TrackingUnavailableError, match="experiment 'remote' .* is deleted"):
        RemoteTracker(*connections, uri, "remote", spec_hash="x")
    started.end()


def test_a_tracking_process_that_dies_is_a_lost_store_and_the_finished_runs_stay_on_disk(tmp_path):
    uri = f"sqlite:///{tmp_path / 's.db'}"
    process = start_tracking_process(uri).process
    queue = TrackingQueue(uri, "lost", "x", Records(uri, "lost", "x"))  # takes the tracking process
    parent = queue.submit(lambda tracker: tracker.start_parent({}, resume=False)).result()
    assert parent == {} and isinstance(queue.wait(), RemoteTracker)
    process.kill()
    process.wait()
    child = ChildRun("he/seed=0", {"scheme": "he"})
    child.add_epoch(1, {"val_accuracy": 0.5})
    child.finish(None)
    queue.submit_runs([child])
    with pytest.raises(
        TrackingLostError, match=r"stopped working \(ConnectionError: the MLflow tracking process ended"
    ):
        queue.wait()
    queue.close()
    (record,) = queue.records.attempt.glob("*/")
    assert json.loads((record / "run.json").read_text())["run_key"] == "he/seed=0"  # for --resume to write
    # Dead before the store is opened: the store cannot be used, and says why.
    process = start_tracking_process(uri).process
    process.kill()
    process.wait()
    queue = TrackingQueue(uri, "lost", "x", Records(uri, "lost", "x"))
    with pytest.raises(
        TrackingUnavailableError, match=f"cannot use the MLflow store {uri}: the MLflow tracking process"
    ):
        queue.wait()
    queue.close()
