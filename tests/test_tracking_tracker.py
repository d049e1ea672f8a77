"""One comparison's MLflow requests (`initlab.tracking.tracker`) on a real SQLite store: the layout's tags
(`initlab.tracking.layout`), a parent found again by its spec's hash, and a retried unit's runs replaced."""

import json

from mlflow.tracking import MlflowClient

from initlab.tracking import ChildRun, ComparisonTracker, Records
from initlab.tracking.layout import PARENT_TAG, ROLE_TAG, RUN_KEY_TAG, SPEC_HASH_TAG, VERSION_TAG, VIEW_TAG_PREFIX


def write(tracker, key, status):
    child = ChildRun(key, {"scheme": key.split("/")[0]})
    child.add_epoch(1, {"val_accuracy": 0.5})
    child.finish(None, status)
    return tracker.write_record(Records(tracker.uri, "tiny", tracker.spec_hash, tracker.parent_id).stage(child))


def test_a_comparison_is_laid_out_resumed_and_joined(tmp_path, store):
    uri = store()
    client = MlflowClient(uri)
    tracker = ComparisonTracker(uri, "tiny", spec_hash="h1")
    assert tracker.start_parent({"epochs": 2}, resume=False, run_name="tiny 2026-12-07 01:00") == {}
    parent = client.get_run(tracker.parent_id)
    assert parent.info.run_name == "tiny 2026-12-07 01:00" and parent.data.params == {"epochs": "2"}
    assert (parent.data.tags[ROLE_TAG], parent.data.tags[SPEC_HASH_TAG]) == ("comparison", "h1")
    assert VERSION_TAG in parent.data.tags
    finished = write(tracker, "he/seed=0", "FINISHED")
    write(tracker, "he/seed=1", "FAILED")
    children = {run.data.tags[RUN_KEY_TAG]: run for run in tracker.children()}
    assert sorted(children) == ["he/seed=0", "he/seed=1"]
    assert {run.data.tags[PARENT_TAG] for run in children.values()} == {tracker.parent_id}
    assert not Records(uri, "tiny", "h1").root.exists()  # written, the records are gone
    tracker.save_view(runs=2)
    view = json.loads(client.get_experiment(tracker.experiment_id).tags[VIEW_TAG_PREFIX + tracker.parent_id])
    assert view["searchFilter"] == f"tags.`{PARENT_TAG}` = '{tracker.parent_id}'"

    # --resume: the latest parent of the same spec hash, its finished runs kept, the others deleted.
    again = ComparisonTracker(uri, "tiny", spec_hash="h1")
    assert again.start_parent({}, resume=True) == {"he/seed=0": finished}
    assert again.parent_id == tracker.parent_id and [run.info.run_id for run in again.children()] == [finished]
    other = ComparisonTracker(uri, "tiny", spec_hash="h2")  # another spec: a new parent
    assert other.start_parent({}, resume=True) == {} and other.parent_id != tracker.parent_id

    # A unit of work retried on a cluster: the runs an earlier attempt left are replaced, the others kept.
    write(again, "glorot/seed=0", "FINISHED")
    worker = ComparisonTracker(uri, "tiny", spec_hash="h1")
    worker.join_parent(tracker.parent_id, ["glorot/seed=0"])
    assert [run.data.tags[RUN_KEY_TAG] for run in worker.children()] == ["he/seed=0"]
    assert worker.metric_histories({"he/seed=0": finished}, "val_accuracy") == {"he/seed=0": [0.5]}
