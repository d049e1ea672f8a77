"""The runs trained here (`initlab.comparison.local`): every seed's runs stacked in one call end where runs trained
one by one end; runs trained side by side in lanes end where each ends trained alone."""

import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY, runs_of
from initlab.comparison import ModelBuilder, load_spec_data, local, run_comparison
from initlab.spec import ComparisonSpec
from keras_initlab.training import stacked, train


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


@pytest.mark.parametrize(
    "changes",
    [
        {"model": {"sizes": [784, 32, 32, 32, 32, 10], "activation": "relu", "output": "softmax"}, "schemes": ["he"]},
        {
            "model": {"kind": "convnet", "filters": [4, 8], "activation": "relu", "output": "softmax"},
            "schemes": ["he", "lsuv"],
            "optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.001}},
        },
    ],
    ids=["deep-mlp-momentum", "convnet-adam"],
)
def test_runs_trained_side_by_side_in_lanes_end_where_each_ends_trained_alone(tmp_path, store, monkeypatch, changes):
    """Four runs in two lanes (a compiled loop each, each run's models and diagnostics made in its lane): every
    run's curves are those of `train` on the same initial model alone, bit for bit."""
    spec = {
        **TINY,
        "seeds": [0, 1],
        "optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.05, "momentum": 0.9}},
        **changes,
    }
    spec.pop("learning_rate")
    monkeypatch.setattr(local, "lanes_for", lambda *args: 2)
    uri = store()
    outcome = run_comparison(spec, tracking_uri=uri, stack=False)
    assert not outcome.failures
    client = MlflowClient(uri)
    _, children = runs_of(client, "tiny")
    resolved = ComparisonSpec.from_dict(spec)
    builder = ModelBuilder(resolved, load_spec_data(resolved))
    assert len(children) == len(resolved.runs()) == 2 * len(resolved.schemes)
    for run in resolved.runs():
        (child,) = [c for c in children if c.data.tags["initlab.run_key"] == run.key]
        model, _ = builder.initial(run.scheme, run.seed)
        alone = train(
            model,
            builder.data,
            epochs=resolved.epochs,
            batch_size=resolved.batch_size,
            seed=run.seed,
            optimizer=resolved.build_optimizer(),
            loss=builder.loss(model),
        ).history
        for metric in ("train_loss", "val_loss", "val_accuracy"):
            tracked = sorted(client.get_metric_history(child.info.run_id, metric), key=lambda m: m.step)
            assert [m.value for m in tracked] == alone[metric], (run.key, metric)
