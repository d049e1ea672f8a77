"""LSUV: unit pre-activation variance measured independently, the iteration cap, seeds, bad input, and in
comparisons."""

import json

import keras
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

import keras_initlab as kil
from initlab.cli import main
from initlab.comparison import ModelBuilder, load_spec_data
from initlab.spec import ComparisonSpec

TOL = 0.1


@pytest.fixture(scope="module")
def batch():
    return kil.load_dataset("mnist-10k").x_train[:512]


def preactivation_stds(model, x):
    """Each Dense/Conv layer's ``z = W x + b`` std on ``x``, computed here from its input and weights."""
    x = x.reshape((len(x), *model.input_shape[1:])).astype(np.float32)
    stds = []
    for layer in model.layers:
        if not hasattr(layer, "kernel"):
            continue
        received = np.asarray(keras.Model(model.inputs[0], layer.input)(x), dtype=np.float32)
        kernel, bias = (np.asarray(w, dtype=np.float32) for w in (layer.kernel, layer.bias))
        if isinstance(layer, keras.layers.Dense):
            z = received @ kernel + bias
        else:
            z = np.asarray(keras.ops.conv(received, kernel, strides=layer.strides, padding=layer.padding)) + bias
        stds.append(float(np.std(z.astype(np.float64))))
    return stds


def test_a_deep_tanh_mlp_gets_unit_preactivation_std(batch):
    # nielsen-default has N(0, 1) biases: z no longer scales with the kernel alone, several passes are needed.
    model = kil.build_mlp(
        [784] + [256] * 10 + [10], activation="tanh", output="softmax", scheme="nielsen-default", seed=0
    )
    steps = kil.lsuv(model, batch, tol=TOL)
    assert [s.layer for s in steps] == [f"dense_{i}" for i in range(1, 12)]
    assert max(s.iterations for s in steps) > 1
    for std in preactivation_stds(model, batch):
        assert abs(std - 1) < TOL


def test_a_conv_net_gets_unit_preactivation_std(batch):
    model = kil.build_convnet(filters=(8, 16), scheme="orthogonal", seed=0)
    steps = kil.lsuv(model, batch, tol=0.05)
    assert [s.layer for s in steps] == ["conv_1", "conv_2", "dense_out"]
    for std in preactivation_stds(model, batch):
        assert abs(std - 1) < 0.05


def test_a_layer_reached_around_another_is_scaled_on_the_signal_the_model_gives_it(batch):
    # The last layer's input joins the model's input to the second layer's output (a path around the second
    # layer): it is computed from the model's input, after the layers before it were rescaled.
    def dense(units, seed, activation=None):
        return keras.layers.Dense(units, activation, kernel_initializer=keras.initializers.Orthogonal(seed=seed))

    inputs = keras.Input((784,))
    hidden = dense(64, 2, "tanh")(dense(64, 1, "tanh")(inputs))
    model = keras.Model(inputs, dense(10, 3)(keras.layers.Concatenate()([inputs, hidden])))
    steps = kil.lsuv(model, batch)
    stds = preactivation_stds(model, batch)
    assert [step.std_after for step in steps] == pytest.approx(stds, rel=1e-5)
    assert all(abs(std - 1) < TOL for std in stds)


def test_the_iteration_cap_is_respected(batch):
    capped = kil.build_mlp([784, 100, 10], scheme="nielsen-large", seed=0)
    steps = kil.lsuv(capped, batch, max_iter=1)
    assert [s.iterations for s in steps] == [1, 1]
    assert any(abs(std - 1) >= TOL for std in preactivation_stds(capped, batch))  # one pass was not enough
    free = kil.build_mlp([784, 100, 10], scheme="nielsen-large", seed=0)
    assert max(s.iterations for s in kil.lsuv(free, batch, max_iter=50)) > 1
    assert all(abs(std - 1) < TOL for std in preactivation_stds(free, batch))


def test_the_same_seed_and_batch_give_the_same_weights(batch):
    first, second, other = (
        kil.build_mlp([784, 64, 64, 10], activation="relu", output="softmax", scheme="orthogonal", seed=s)
        for s in (1, 1, 2)
    )
    for model in (first, second, other):
        kil.lsuv(model, batch)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])


def test_float16_kernels(batch):
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(64, activation="tanh", dtype="float16", kernel_initializer="orthogonal"),
            keras.layers.Dense(10, activation="softmax", dtype="float16", kernel_initializer="orthogonal"),
        ]
    )
    kil.lsuv(model, batch.reshape(len(batch), -1))
    assert all(layer.kernel.dtype == "float16" for layer in model.layers)
    for std in preactivation_stds(model, batch):
        assert abs(std - 1) < TOL


def test_a_dead_layer_is_left_alone_without_nan(batch):
    model = kil.build_mlp([784, 30, 10], scheme="zeros", seed=0)
    with pytest.warns(RuntimeWarning, match=r"layer 'dense_1' is constant on the batch \(std 0\)"):
        steps = kil.lsuv(model, batch)
    assert all(s.dead and s.iterations == 0 and s.std_after == 0 for s in steps)
    assert all(np.all(np.isfinite(w)) and not np.any(w) for w in model.get_weights())


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m, x: kil.lsuv(m, x[:0]), ValueError, r"at least 2 examples .* got shape \(0, 28, 28, 1\)"),
        (lambda m, x: kil.lsuv(m, x[:1]), ValueError, r"at least 2 examples"),
        (lambda m, x: kil.lsuv(m, np.zeros((8, 10))), ValueError, r"Data of shape \(10,\) cannot feed model"),
        (lambda m, x: kil.lsuv(m, x, tol=0), ValueError, r"`tol` must be a positive finite number"),
        (lambda m, x: kil.lsuv(m, x, tol="0.1"), TypeError, r"`tol` must be a positive finite number"),
        (lambda m, x: kil.lsuv(m, x, max_iter=0), ValueError, r"`max_iter` must be an int >= 1"),
        (
            lambda m, x: kil.lsuv(keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten()]), x),
            ValueError,
            r"has no Dense or Conv1D/2D/3D layer",
        ),
    ],
)
def test_bad_input(batch, call, error, message):
    model = kil.build_mlp([784, 30, 10], scheme="orthogonal", seed=0)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(error, match=message):
        call(model, batch[:16])
    for a, b in zip(before, model.get_weights(), strict=True):  # nothing was changed
        np.testing.assert_array_equal(a, b)


def test_orthogonal_kernels_have_orthonormal_columns():
    kernel, bias = kil.get_scheme("orthogonal", seed=0)
    w = np.asarray(kernel((784, 30)), dtype=np.float64)
    np.testing.assert_allclose(w.T @ w, np.eye(30), atol=1e-5)
    assert not np.any(np.asarray(bias((30,))))


# -- in comparisons ------------------------------------------------------------------------

SPEC = {
    "name": "lsuv",
    "subset": {"train": 400, "val": 200},
    "model": {"sizes": [784, 64, 64, 64, 10], "activation": "tanh", "output": "softmax"},
    "schemes": ["lsuv", "he"],
    "seeds": [0],
    "epochs": 1,
    "batch_size": 20,
    "learning_rate": 0.05,
    "lsuv_examples": 300,
}


def children(uri, experiment):
    client = MlflowClient(uri)
    found = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], "tags.`mlflow.parentRunId` != ''"
    )
    return client, {c.data.params["scheme"]: c for c in found}


FACTORY = """\
import keras


def build(scheme, input_shape, num_classes):
    inputs = keras.Input(input_shape)
    kernel, bias = scheme.kernel(), scheme.bias()
    conv = keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=kernel, bias_initializer=bias)
    h = conv(inputs)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(num_classes, activation="softmax", kernel_initializer=scheme.kernel(),
                                 bias_initializer=scheme.bias())(h)
    return keras.Model(inputs, outputs)
"""


@pytest.mark.parametrize(
    "model, layers",
    [(SPEC["model"], 4), ({"kind": "convnet", "filters": [4, 8]}, 3), ({"factory": "factory.py:build"}, 2)],
)
def test_lsuv_in_a_comparison_logs_its_report(tmp_path, model, layers, store):
    (tmp_path / "factory.py").write_text(FACTORY)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "model": model}))
    uri = store()
    assert main(["compare", str(path), "--tracking-uri", uri]) == 0
    client, runs = children(uri, "lsuv")
    lsuv_run, he_run = runs["lsuv"], runs["he"]
    assert lsuv_run.data.params["lsuv_examples"] == "300" and "lsuv_examples" not in he_run.data.params
    for depth in range(1, layers + 1):
        assert abs(lsuv_run.data.metrics[f"lsuv/layer{depth}/std_after"] - 1) < TOL
        # the step-0 diagnostics measure the model LSUV left (on the validation images), with no prediction
        assert 0.5 < lsuv_run.data.metrics[f"init/layer{depth}/preact_std"] < 2
        assert f"init/layer{depth}/predicted_std" not in lsuv_run.data.metrics
        assert f"init/layer{depth}/predicted_std" in he_run.data.metrics
    report = client.download_artifacts(lsuv_run.info.run_id, "init/lsuv.md")
    assert "| 1 |" in open(report).read()
    # ... exactly: the model the run started from, rescaled by LSUV (the first group is diagnosed on a copy).
    spec = ComparisonSpec.from_file(path)
    builder = ModelBuilder(spec, load_spec_data(spec))
    model, steps = builder.initial(spec.schemes[0], 0)
    table, _ = builder.diagnose(model, steps)
    for key, value in table.metrics().items():
        assert lsuv_run.data.metrics[key] == pytest.approx(value, rel=1e-5), key


def test_diagnose_marks_lsuv_predictions_not_applicable(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps({**SPEC, "lsuv_examples": 5000}))  # more than the 400 training images: all of them
    assert main(["diagnose", str(path), "--out", str(tmp_path / "figures")]) == 0
    out = capsys.readouterr().out
    lsuv_table = out.split("## lsuv")[1].split("## he")[0]
    rows = [line.split("|") for line in lsuv_table.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert rows and all(row[8].strip() == "-" and row[9].strip() == "-" for row in rows)  # predicted std, ratio
    assert all(abs(float(row[7]) - 1) < 0.3 for row in rows)  # z std near 1 (validation images, not the LSUV batch)
