"""Any Keras model in a comparison: the factory contract, model kinds, the optimizer and loss keys."""

import json
import math

import keras
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from keras_initlab import Scheme, load_dataset, run_comparison, train
from keras_initlab.cli import main
from keras_initlab.models import FactoryError, build_from_factory, load_factory
from keras_initlab.spec import ComparisonSpec, SpecError

Z = 5.0
FACTORIES = '''\
import keras


def dense(scheme, units, activation, name):
    return keras.layers.Dense(units, activation=activation, kernel_initializer=scheme.kernel(),
                              bias_initializer=scheme.bias(), name=name)


def build(scheme, input_shape, num_classes):
    inputs = keras.Input(input_shape)
    h = keras.layers.Flatten()(inputs)
    h = dense(scheme, 64, "relu", "a")(h)
    h = dense(scheme, 64, "relu", "b")(h)
    return keras.Model(inputs, dense(scheme, num_classes, "softmax", "out")(h))


def sequential(scheme, input_shape, num_classes):
    return keras.Sequential([keras.layers.Flatten(), dense(scheme, num_classes, "softmax", "out")])


def raises(scheme, input_shape, num_classes):
    raise RuntimeError("no GPU here")


def not_a_model(scheme, input_shape, num_classes):
    return "a model"


def wrong_classes(scheme, input_shape, num_classes):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, dense(scheme, num_classes + 1, "softmax", "out")(keras.layers.Flatten()(inputs)))


def logits(scheme, input_shape, num_classes):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, dense(scheme, num_classes, None, "out")(keras.layers.Flatten()(inputs)))


def no_arguments():
    return None
'''
RAISE_LINE = FACTORIES.splitlines().index('    raise RuntimeError("no GPU here")') + 1
SMALL = {
    "name": "factory",
    "dataset": "mnist-10k",
    "subset": {"train": 512, "val": 128},
    "schemes": ["he", "glorot"],
    "seeds": [0],
    "epochs": 2,
    "batch_size": 32,
}


@pytest.fixture
def factories(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "factories.py").write_text(FACTORIES)
    return tmp_path


def write_spec(folder, **changes):
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "model": {"factory": "models/factories.py:build"}, **changes}))
    return path


def kernels(model):
    return {layer.name: keras.ops.convert_to_numpy(layer.kernel) for layer in model.layers if hasattr(layer, "kernel")}


# -- the factory contract ------------------------------------------------------------------


def test_each_layer_gets_its_own_draw_and_the_seed_reproduces(factories):
    build = load_factory("models/factories.py:build", factories)
    first = kernels(build_from_factory(build, Scheme("he", seed=3), (28, 28, 1), 10))
    again = kernels(build_from_factory(build, Scheme("he", seed=3), (28, 28, 1), 10))
    other = kernels(build_from_factory(build, Scheme("he", seed=4), (28, 28, 1), 10))
    assert first["a"].shape == (784, 64) and first["b"].shape == (64, 64)
    same_shaped = kernels(build_from_factory(build, Scheme("he", seed=3), (8, 8, 1), 64))  # a: 64x64, b: 64x64
    assert not np.array_equal(same_shaped["a"], same_shaped["b"])
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
        assert not np.array_equal(first[name], other[name])


def test_he_std_per_layer(factories):
    build = load_factory("models/factories.py:build", factories)
    for name, w in kernels(build_from_factory(build, Scheme("he", seed=0), (28, 28, 1), 10)).items():
        expected = math.sqrt(2 / w.shape[0])  # Var(w) = 2 / fan_in
        assert abs(w.std() - expected) < Z * expected / math.sqrt(2 * w.size), name  # SE of a std: std/sqrt(2n)


def test_a_scheme_instance_pair_is_cloned_with_fresh_seeds():
    pair = (keras.initializers.RandomNormal(stddev=0.5, seed=1), keras.initializers.Zeros())
    scheme = Scheme(pair, seed=0)
    first, second = scheme.kernel(), scheme.kernel()
    assert first is not pair[0] and second is not first
    assert not np.array_equal(first((5, 5)), second((5, 5)))
    assert scheme.name == "RandomNormal_Zeros"
    assert np.array_equal(Scheme(pair, seed=0).kernel()((5, 5)), first((5, 5)))


def test_an_unbuilt_sequential_is_built_for_the_input_shape(factories):
    model = build_from_factory(load_factory("models/factories.py:sequential", factories), Scheme("he", 0), (28, 28, 1), 10)
    assert model.output_shape == (None, 10)


def test_an_importable_module_and_a_function_are_factories(factories, monkeypatch):
    monkeypatch.syspath_prepend(str(factories / "models"))
    by_module = load_factory("factories:build")
    assert by_module.__name__ == "build"
    assert load_factory(by_module) is by_module


@pytest.mark.parametrize(
    "reference, message",
    [
        ("models/missing.py:build", r"no such file .*missing.py"),
        ("models/factories.py:bulid", r"has no 'bulid'; its functions: build, dense, logits, no_arguments"),
        ("models/factories.py", r"is not a factory reference; write 'file.py:function'"),
        ("no_such_module_here:build", r"importing no_such_module_here raised ModuleNotFoundError"),
    ],
)
def test_factories_that_cannot_be_loaded(factories, reference, message):
    with pytest.raises(FactoryError, match=message):
        load_factory(reference, factories)


@pytest.mark.parametrize(
    "function, message",
    [
        ("raises", rf"raised RuntimeError: no GPU here \(factories.py, line {RAISE_LINE}\)"),
        ("not_a_model", r"returned a str, not a keras.Model"),
        ("wrong_classes", r"output shape is \(11,\), not \(10,\)"),
        ("no_arguments", r"must accept the keyword arguments scheme, input_shape, num_classes; its signature is \(\)"),
    ],
)
def test_factories_that_fail_or_return_the_wrong_thing(factories, function, message):
    with pytest.raises(FactoryError, match=message):
        build_from_factory(load_factory(f"models/factories.py:{function}", factories), Scheme("he", 0), (28, 28, 1), 10)


@pytest.mark.parametrize(
    "model, message",
    [
        ({"factory": "models/missing.py:build"}, r"model.factory: no such file .*missing.py \(a factory file's path is relative to the spec's folder\)"),
        ({"factory": "models/factories.py:bulid"}, r"model.factory: .* has no 'bulid'"),
        ({"factory": "models/factories.py:raises"}, rf"model.factory: with scheme he: .*raised RuntimeError: no GPU here \(factories.py, line {RAISE_LINE}\)"),
        ({"factory": "models/factories.py:not_a_model"}, r"model.factory: with scheme he: .*returned a str, not a keras.Model"),
        ({"factory": "models/factories.py:wrong_classes"}, r"output shape is \(11,\), not \(10,\)"),
        ({"factory": "models/factories.py:logits"}, r"model.factory: .*outputs on 8 validation images are not class probabilities"),
    ],
)
def test_a_bad_factory_exits_2_before_any_run(factories, capsys, model, message):
    store = factories / "store.db"
    assert main(["compare", str(write_spec(factories, model=model)), "--tracking-uri", f"sqlite:///{store}"]) == 2
    assert capsys.readouterr().err.startswith("initlab compare: ")
    with pytest.raises(SpecError, match=message):
        run_comparison(write_spec(factories, model=model), tracking_uri=f"sqlite:///{store}")
    assert not store.exists()  # no store, so no run


def test_logits_with_a_from_logits_loss_are_accepted(factories):
    spec = ComparisonSpec.from_file(write_spec(
        factories, model={"factory": "models/factories.py:logits"}, schemes=["he"], epochs=1,
        loss={"class_name": "SparseCategoricalCrossentropy", "config": {"from_logits": True}},
    ))
    outcome = run_comparison(spec, tracking_uri=f"sqlite:///{factories / 'store.db'}")
    assert not outcome.failures and outcome.summary[0].final > 0.5


# -- spec keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"optimizer": "adamm"}, r"optimizer: not an optimizer Keras knows: Could not interpret optimizer identifier: adamm"),
        ({"optimizer": {"class_name": "SGD", "config": {"momentun": 0.9}}}, r"optimizer: not an optimizer .*momentun"),
        ({"optimizer": 3}, r"optimizer: must be an optimizer name or a Keras config \{class_name, config\}; got 3"),
        ({"optimizer": "adam", "learning_rate": 0.1}, r"learning_rate: give it inside the optimizer's config"),
        ({"loss": "nope"}, r"loss: not a loss Keras knows"),
        ({"l2_lambda": 5.0}, r"l2_lambda: a factory builds its own layers; give them kernel_regularizer"),
        ({"model": {"factory": "models/factories.py:build", "sizes": [784, 10]}}, r"model.sizes: unknown key; allowed: factory"),
        ({"model": {"factory": 3}}, r"model.factory: must be 'file.py:function', 'package.module:function' or a function"),
        ({"model": {"kind": "resnet"}}, r"model.kind: must be one of \('mlp', 'convnet'\); got 'resnet'"),
        ({"model": {"kind": "convnet", "sizes": [784, 10]}}, r"model.sizes: unknown key; allowed: activation, filters, kind, output"),
        ({"model": {"kind": "convnet", "filters": [8]}}, r"model.filters: must be a list of 2 int\(s\) between 1 and 1000000; got \[8\]"),
        ({"model": {"sizes": [784, 10]}, "loss": "mse"}, r"loss: only for a factory model; the loss of the built-in MLP"),
    ],
)
def test_bad_model_optimizer_and_loss_keys(factories, changes, message):
    with pytest.raises(SpecError, match=message):
        ComparisonSpec.from_file(write_spec(factories, **changes))


def test_a_function_given_in_python_is_recorded_by_name_and_kept_by_replace(factories):
    build = load_factory("models/factories.py:build", factories)
    spec = ComparisonSpec.from_dict({**SMALL, "model": {"factory": build}})
    assert spec.to_json()["model"] == {"factory": f"{build.__module__}:build"}
    assert spec.replace(epochs=1).model.factory is build
    assert spec.replace(epochs=1).hash == ComparisonSpec.from_dict({**SMALL, "epochs": 1, "model": {"factory": build}}).hash


def test_a_notebook_function_trains_and_resumes_by_its_name(factories):
    build = load_factory("models/factories.py:build", factories)
    spec = {**SMALL, "model": {"factory": build}, "schemes": ["he"], "epochs": 1}
    uri = f"sqlite:///{factories / 'store.db'}"
    first = run_comparison(spec, tracking_uri=uri)
    (child,) = MlflowClient(uri).search_runs([first.experiment_id], "tags.`mlflow.parentRunId` != ''")
    assert child.data.params["factory"] == f"{build.__module__}:build"
    again = run_comparison(spec, tracking_uri=uri, resume=True)
    assert again.parent_run_id == first.parent_run_id and again.skipped == ["he/seed=0"]


def test_older_specs_keep_their_hash():
    """Keys added later appear in the hashed JSON only when set: --resume still finds older parents."""
    spec = ComparisonSpec.from_dict({"name": "nielsen", "schemes": ["he"]})
    assert set(spec.to_json()) == {"name", "dataset", "model", "schemes", "seeds", "epochs", "batch_size",
                                   "learning_rate", "l2_lambda", "device"}
    assert spec.to_json()["model"] == {"sizes": [784, 30, 10], "activation": "sigmoid", "output": "sigmoid"}


# -- training and tracking -----------------------------------------------------------------


def saved_model(client, run):
    return keras.saving.load_model(client.download_artifacts(run.info.run_id, "model/model.keras"))


@pytest.mark.parametrize(
    "optimizer, expected",
    [
        ({"class_name": "SGD", "config": {"learning_rate": 0.01, "momentum": 0.9}}, {"momentum": 0.9}),
        ("adam", {"beta_1": 0.9, "beta_2": 0.999}),
    ],
)
def test_the_optimizer_of_the_spec_trains_every_run(tmp_path, optimizer, expected):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    spec = {**SMALL, "model": {"sizes": [784, 30, 10], "activation": "relu", "output": "softmax"}, "optimizer": optimizer}
    outcome = run_comparison(spec, tracking_uri=uri)
    assert not outcome.failures
    client = MlflowClient(uri)
    children = client.search_runs([outcome.experiment_id], "tags.`mlflow.parentRunId` != ''")
    assert len(children) == 2
    steps = SMALL["epochs"] * (SMALL["subset"]["train"] // SMALL["batch_size"])
    for child in children:
        model = saved_model(client, child)
        config = model.optimizer.get_config()
        assert type(model.optimizer).__name__ == child.data.params["optimizer"] == ("SGD" if "class_name" in optimizer else "Adam")
        assert {key: config[key] for key in expected} == pytest.approx(expected)
        assert int(model.optimizer.iterations) == steps  # it is the optimizer that took every step
        logged = json.loads(child.data.params["optimizer_config"])
        assert logged == pytest.approx({k: v for k, v in config.items() if k != "name"})
        assert child.data.metrics["val_accuracy"] > 0.5


def test_plain_sgd_runs_record_their_optimizer_too(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    spec = {**SMALL, "model": {"sizes": [784, 30, 10]}, "schemes": ["nielsen-default"], "epochs": 1, "learning_rate": 0.5}
    outcome = run_comparison(spec, tracking_uri=uri)
    (child,) = MlflowClient(uri).search_runs([outcome.experiment_id], "tags.`mlflow.parentRunId` != ''")
    assert (child.data.params["optimizer"], child.data.params["learning_rate"]) == ("SGD", "0.5")


def test_the_convnet_kind_compares_and_diagnoses(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    spec = write_spec(tmp_path, model={"kind": "convnet", "filters": [4, 8]}, schemes=["he", "lecun"], epochs=1)
    assert main(["compare", str(spec), "--tracking-uri", uri]) == 0
    client = MlflowClient(uri)
    children = client.search_runs([client.get_experiment_by_name("factory").experiment_id], "tags.`mlflow.parentRunId` != ''")
    assert {c.data.params["kind"] for c in children} == {"convnet"}
    for child in children:
        assert json.loads(child.data.params["filters"]) == [4, 8]
        assert [layer.name for layer in saved_model(client, child).layers if hasattr(layer, "kernel")] == \
            ["conv_1", "conv_2", "dense_out"]
        for depth in (1, 2, 3):  # the step-0 diagnostics of both conv layers and the output layer
            assert child.data.metrics[f"init/layer{depth}/grad_norm"] > 0
    assert main(["diagnose", str(spec), "--out", str(tmp_path / "figures")]) == 0
    assert "| conv_2 |" in capsys.readouterr().out


def test_diagnose_a_factory_spec(factories, capsys):
    assert main(["diagnose", str(write_spec(factories)), "--out", str(factories / "figures")]) == 0
    out = capsys.readouterr().out
    for layer in ("a", "b", "out"):
        assert f"| {layer} |" in out
    assert (factories / "figures" / "activations-glorot.png").is_file()


def test_a_factory_comparison_fails_alone_and_resumes(factories, capsys):
    uri = f"sqlite:///{factories / 'store.db'}"
    exploding = {"name": "huge", "kernel": {"class_name": "RandomNormal", "config": {"stddev": 1e30}}, "bias": "zeros"}
    spec = write_spec(factories, schemes=["he", exploding], optimizer="sgd")
    assert main(["compare", str(spec), "--tracking-uri", uri]) == 1
    assert "huge/seed=0: NonFiniteLossError" in capsys.readouterr().err
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("factory").experiment_id
    children = {c.data.tags["initlab.run_key"]: c for c in client.search_runs([experiment], "tags.`mlflow.parentRunId` != ''")}
    assert children["he/seed=0"].info.status == "FINISHED" and children["huge/seed=0"].info.status == "FAILED"
    assert children["he/seed=0"].data.params["factory"] == "models/factories.py:build"

    assert main(["compare", str(spec), "--tracking-uri", uri, "--resume"]) == 1  # huge fails again; he is kept
    assert "resumed: 1 finished run(s) kept: he/seed=0" in capsys.readouterr().out
    again = {c.data.tags["initlab.run_key"]: c for c in client.search_runs([experiment], "tags.`mlflow.parentRunId` != ''")}
    assert again["he/seed=0"].info.run_id == children["he/seed=0"].info.run_id
    assert again["huge/seed=0"].info.run_id != children["huge/seed=0"].info.run_id
    assert len(client.search_runs([experiment], "tags.`initlab.role` = 'comparison'")) == 1


def test_train_gives_the_same_weights_with_and_without_xla():
    data = load_dataset("mnist-10k").subset(256, 64)

    def trained(jit_compile):
        import keras_initlab

        model = keras_initlab.build_convnet(filters=(4, 8), seed=0)
        train(model, data, epochs=1, batch_size=32, optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit_compile)
        return kernels(model)

    with_xla, without = trained(True), trained(False)
    for name in with_xla:
        np.testing.assert_allclose(with_xla[name], without[name], rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match=r"jit_compile"):
        trained("yes")
