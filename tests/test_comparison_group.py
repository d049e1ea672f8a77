"""A group of runs (`initlab.comparison.group.train_group`): a run that fails is marked FAILED with its reason and
the others finish."""

from mlflow.tracking import MlflowClient

from conftest import runs_of, write_spec
from initlab.cli import main


def test_failed_child_is_marked_and_the_others_finish(tmp_path, capsys, store):
    uri = store()
    exploding = {"name": "huge", "kernel": {"class_name": "RandomNormal", "config": {"stddev": 1e30}}, "bias": "zeros"}
    spec = write_spec(
        tmp_path,
        model={"sizes": [784, 30, 10], "activation": "relu", "output": "softmax"},
        schemes=["he", exploding],
        seeds=[0],
        epochs=2,
        learning_rate=0.01,
    )
    assert main(["compare", str(spec), "--tracking-uri", uri]) == 1
    assert "huge/seed=0: NonFiniteLossError" in capsys.readouterr().err
    parents, children = runs_of(MlflowClient(uri), "tiny")
    status = {c.data.tags["initlab.run_key"]: c for c in children}
    assert status["he/seed=0"].info.status == "FINISHED"
    assert status["huge/seed=0"].info.status == "FAILED"
    assert "epoch 1" in status["huge/seed=0"].data.tags["initlab.failure"]
    assert parents[0].info.status == "FAILED"
    assert "he" in parents[0].data.tags["mlflow.note.content"]  # the summary of the runs that finished
    assert "final_val_accuracy" in status["he/seed=0"].data.metrics
    assert "final_val_accuracy" not in status["huge/seed=0"].data.metrics
