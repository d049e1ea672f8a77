"""Your own training loop as a comparison (`initlab.comparison.own_loop`): `Comparison` and its runs, laid out in
MLflow as ``initlab compare`` lays a spec out, on real data other than MNIST (scikit-learn's digits)."""

import json
from pathlib import Path

import keras
import pytest
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_digits

import keras_initlab as kil
from conftest import runs_of
from initlab import Comparison, run_comparison
from initlab.spec_files import SpecError
from initlab.tracking.layout import FAILURE_TAG, VIEW_TAG_PREFIX

DIGITS = load_digits()  # 1,797 real 8x8 digits, shipped in scikit-learn's wheel
X, Y = (DIGITS.images / 16).reshape(-1, 64).astype("float32"), DIGITS.target
SIZES = [64, 16, 10]


def mlp(scheme, seed):
    return kil.build_mlp(SIZES, activation="relu", output="softmax", scheme=scheme, seed=seed)


def test_your_fit_loop_is_laid_out_as_initlab_compare_lays_out_a_spec(store, capsys):
    uri = store()
    with Comparison("own", tracking_uri=uri) as comparison:
        for scheme in ("he", "glorot"):
            for seed in (0, 1):
                model = mlp(scheme, seed)
                model.compile(keras.optimizers.SGD(0.3), "sparse_categorical_crossentropy", metrics=["accuracy"])
                with comparison.run(
                    scheme, seed, model, x_sample=X[1400:], y_sample=Y[1400:], save_model=seed == 0
                ) as run:
                    model.fit(
                        X[:1400],
                        Y[:1400],
                        validation_data=(X[1400:], Y[1400:]),
                        epochs=3,
                        batch_size=20,
                        verbose=0,
                        callbacks=[run.callback],
                    )
    out = capsys.readouterr().out
    assert "| he | 2 |" in out and "| glorot | 2 |" in out and f"then open {comparison.url}" in out
    client = MlflowClient(uri)
    (parent,), children = runs_of(client, "own")
    assert parent.info.status == "FINISHED" and len(children) == 4
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "comparison.png",
        "layers.png",
        "summary.md",
        "summary.csv",
    }
    view = json.loads(client.get_experiment(parent.info.experiment_id).tags[VIEW_TAG_PREFIX + parent.info.run_id])
    assert [s["name"] for s in view["compareRunSections"]] == ["Learning curves", "Layers", "System metrics"]
    # The same model and scheme through a spec: the own loop's child has its params and its metrics (and Keras'
    # training accuracy besides, which fit logs).
    spec = {
        "name": "spec",
        "model": {"sizes": SIZES, "activation": "relu", "output": "softmax"},
        "schemes": ["he"],
        "seeds": [0],
        "epochs": 3,
        "batch_size": 20,
        "learning_rate": 0.3,
    }
    run_comparison(spec, tracking_uri=uri, data=kil.Dataset.from_arrays(X[:1400], Y[:1400], X[1400:], Y[1400:]))
    _, (from_spec,) = runs_of(client, "spec")
    own = next(c for c in children if c.data.tags["initlab.run_key"] == "he/seed=0")
    assert set(own.data.params) < set(from_spec.data.params)
    compared = ("scheme", "seed", "kernel_initializer", "bias_initializer", "parameters", "optimizer")
    compared += ("learning_rate", "optimizer_config")
    assert {k: own.data.params[k] for k in compared} == {k: from_spec.data.params[k] for k in compared}
    assert set(own.data.metrics) == set(from_spec.data.metrics) | {"train_accuracy"}
    assert own.data.params["epochs"] == "3" and own.data.metrics["final_val_accuracy"] > 0.5
    history = client.get_metric_history(own.info.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == [1, 2, 3]  # step = epoch, 1-based
    for layer in (1, 2):  # the layers watched on the sample: step 0 is the diagnostics', then every epoch
        watched = sorted(
            client.get_metric_history(own.info.run_id, f"layers/layer{layer}/grad_norm"), key=lambda m: m.step
        )
        assert [m.step for m in watched] == [0, 1, 2, 3]
        assert watched[0].value == own.data.metrics[f"init/layer{layer}/grad_norm"] > 0
    artifacts = {a.path for a in client.list_artifacts(own.info.run_id)}
    assert "model" in artifacts and "init" in artifacts  # asked for: the trained model; the step-0 table
    layers = [
        json.loads(Path(client.download_artifacts(run.info.run_id, "init/initializers.json")).read_text())
        for run in (own, from_spec)
    ]
    assert layers[0] == layers[1] and [layer["layer"] for layer in layers[0]] == ["dense_1", "dense_2"]
    assert layers[0][1]["bias"].startswith("BiasConstant ")  # he: b = 0.01, every layer's initializers as built


def test_a_loop_of_your_own_and_runs_that_fail_or_are_interrupted(store, capsys):
    uri = store()
    with Comparison("custom", tracking_uri=uri, progress=None) as comparison:
        model = mlp("he", 0)
        with comparison.run("he", 0, model) as run:  # no x_sample: no step-0 diagnostics
            for epoch in (1, 2):
                run.log_epoch(epoch, {"loss": 1.0 / epoch, "val_accuracy": 0.5 + epoch / 10})
            with pytest.raises(ValueError, match=r"`epoch` must be an int >= 3"):
                run.log_epoch(2, {"loss": 0.1})
        with pytest.raises(RuntimeError, match="no GPU"):
            with comparison.run("glorot", 0, mlp("glorot", 0)):
                raise RuntimeError("no GPU")
        with pytest.raises(KeyboardInterrupt):
            with comparison.run("glorot", 1, mlp("glorot", 1)):
                raise KeyboardInterrupt
        for args, error, message in [
            (("hee", 0, model), ValueError, r"Unknown scheme 'hee'; known: "),
            (((1, 2), 0, model), TypeError, r"a scheme name or a \(kernel, bias\) pair"),
            (("he", -1, model), ValueError, r"`seed` must be an int >= 0"),
            (("he", 1, "model"), TypeError, r"`model` must be a keras.Model"),
            (("he", 0, model), ValueError, r"he/seed=0 already ran in this comparison"),
        ]:
            with pytest.raises(error, match=message):
                comparison.run(*args)
        with comparison.run("he", 2, model):
            with pytest.raises(RuntimeError, match="run 'he/seed=2' has not ended; runs do not nest"):
                comparison.run("he", 3, model)
    with pytest.raises(RuntimeError, match=r"inside `with Comparison\(...\) as comparison:`"):
        comparison.run("he", 4, model)
    with pytest.raises(RuntimeError, match=r"Comparison 'custom' was entered once; make a new Comparison"):
        comparison.__enter__()
    assert capsys.readouterr().out == ""  # progress=None: nothing printed
    client = MlflowClient(uri)
    (parent,), children = runs_of(client, "custom")
    status = {c.data.tags["initlab.run_key"]: c.info.status for c in children}
    assert (
        status
        == {"he/seed=0": "FINISHED", "glorot/seed=0": "FAILED", "glorot/seed=1": "KILLED", "he/seed=2": "FINISHED"}
        and parent.info.status == "FAILED"
    )
    failed = next(c for c in children if c.data.tags["initlab.run_key"] == "glorot/seed=0")
    assert failed.data.tags[FAILURE_TAG] == "RuntimeError: no GPU"
    first = next(c for c in children if c.data.tags["initlab.run_key"] == "he/seed=0")
    assert [m.value for m in client.get_metric_history(first.info.run_id, "train_loss")] == [1.0, 0.5]
    assert first.data.metrics["best_val_accuracy"] == pytest.approx(0.7)
    with pytest.raises(SpecError, match="experiment 'a/b': give a name"):
        Comparison("a/b", tracking_uri=uri)
    with pytest.raises(KeyboardInterrupt):  # an interrupted comparison: its parent KILLED
        with Comparison("stopped", tracking_uri=uri, progress=None):
            raise KeyboardInterrupt
    (stopped,), _ = runs_of(client, "stopped")
    assert stopped.info.status == "KILLED"


def test_the_library_says_where_comparison_is():
    with pytest.raises(
        AttributeError,
        match=r"keras_initlab.Comparison is the application's .* `from initlab import "
        r"Comparison`",
    ):
        kil.Comparison  # noqa: B018 (the attribute access is the test)
