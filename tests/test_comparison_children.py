"""The child runs' params (`initlab.comparison.children`): the spec's optimizer trains every run and is
recorded, plain SGD included."""

import json

import pytest
from mlflow.tracking import MlflowClient

from conftest import FACTORY_SPEC, saved_model
from initlab.comparison import run_comparison


@pytest.mark.parametrize(
    "optimizer, expected",
    [
        ({"class_name": "SGD", "config": {"learning_rate": 0.01, "momentum": 0.9}}, {"momentum": 0.9}),
        ("adam", {"beta_1": 0.9, "beta_2": 0.999}),
    ],
)
def test_the_optimizer_of_the_spec_trains_every_run(tmp_path, optimizer, expected, store):
    uri = store()
    spec = {
        **FACTORY_SPEC,
        "model": {"sizes": [784, 30, 10], "activation": "relu", "output": "softmax"},
        "optimizer": optimizer,
    }
    outcome = run_comparison(spec, tracking_uri=uri)
    assert not outcome.failures
    client = MlflowClient(uri)
    children = client.search_runs([outcome.experiment_id], "tags.`mlflow.parentRunId` != ''")
    assert len(children) == 2
    steps = FACTORY_SPEC["epochs"] * (FACTORY_SPEC["subset"]["train"] // FACTORY_SPEC["batch_size"])
    for child in children:
        model = saved_model(client, child)
        config = model.optimizer.get_config()
        assert (
            type(model.optimizer).__name__
            == child.data.params["optimizer"]
            == ("SGD" if "class_name" in optimizer else "Adam")
        )
        assert {key: config[key] for key in expected} == pytest.approx(expected)
        assert int(model.optimizer.iterations) == steps  # it is the optimizer that took every step
        logged = json.loads(child.data.params["optimizer_config"])
        assert logged == pytest.approx({k: v for k, v in config.items() if k != "name"})
        assert child.data.metrics["val_accuracy"] > 0.5


def test_plain_sgd_runs_record_their_optimizer_too(tmp_path, store):
    uri = store()
    spec = {
        **FACTORY_SPEC,
        "model": {"sizes": [784, 30, 10]},
        "schemes": ["nielsen-default"],
        "epochs": 1,
        "learning_rate": 0.5,
    }
    outcome = run_comparison(spec, tracking_uri=uri)
    (child,) = MlflowClient(uri).search_runs([outcome.experiment_id], "tags.`mlflow.parentRunId` != ''")
    assert (child.data.params["optimizer"], child.data.params["learning_rate"]) == ("SGD", "0.5")
