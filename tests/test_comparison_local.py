"""The runs trained here (`initlab.comparison.local`): every seed's runs stacked in one call end where runs trained
one by one end."""

import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY, runs_of
from initlab.comparison import run_comparison
from keras_initlab.training import stacked


def test_every_seed_in_one_stacked_call_gives_the_curves_of_runs_trained_one_by_one(tmp_path, store):
    # 3 schemes x 2 seeds stacked in one train_stacked call (compiled once for the architecture, the two
    # groups of 3 share one trace) against the same runs trained one at a time by `train`.
    spec = {**TINY, "schemes": ["nielsen-default", "nielsen-large", "he"], "learning_rate": 0.0917}
    curves = {}
    for stack in (True, False):
        uri = store(f"stack-{stack}.db")
        run_comparison(spec, tracking_uri=uri, stack=stack)
        client = MlflowClient(uri)
        _, children = runs_of(client, "tiny")
        curves[stack] = {
            c.data.tags["initlab.run_key"]: [
                m.value for m in sorted(client.get_metric_history(c.info.run_id, "val_loss"), key=lambda m: m.step)
            ]
            for c in children
        }
    assert len(curves[True]) == 6 and curves[True].keys() == curves[False].keys()
    for key, values in curves[False].items():
        assert curves[True][key] == pytest.approx(values, rel=1e-5), key
    (compiled,) = [c for key, c in stacked._COMPILED.items() if key[-1] == 0.0917]
    assert compiled.train.experimental_get_tracing_count() == 1
