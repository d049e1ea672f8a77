"""diagnose(): the classic pictures at initialization, measured (the figures: test_plots.py)."""

import dataclasses
import math

import keras
import numpy as np
import pytest

from keras_initlab import build_convnet, build_mlp
from keras_initlab.diagnostics import (
    DiagnosticsTable,
    LayerDiagnostics,
    _is_plain_dense,
    _patch_sum_layer,
    _patch_sums,
    collect_signals,
    dense_chain,
    diagnose,
    diagnosed_layers,
    linear_twin,
    model_input,
    preactivations,
)
from keras_initlab.models import default_loss

init = keras.initializers
SIGMAS = 4.0


def test_large_weights_saturate_the_sigmoid_hidden_layer(tables):
    large, default = tables["nielsen-large"][0], tables["nielsen-default"][0]
    print(
        f"\nhidden sigmoid layer on 1000 mnist-10k validation images, seed 0:"
        f"\n  nielsen-large:   z std {large.preactivation_std:.3f} (predicted {large.predicted_std:.3f}), "
        f"saturated {large.saturated_fraction:.4f}"
        f"\n  nielsen-default: z std {default.preactivation_std:.3f} (predicted {default.predicted_std:.3f}), "
        f"saturated {default.saturated_fraction:.4f}"
    )
    # A sigmoid saturates (a < 0.01 or a > 0.99) when |z| > logit(0.99) = 4.6. With
    # E[x^2] ~ 0.1 on MNIST, N(0, 1) weights give std(z) ~ sqrt(784 * 0.1 + 1) ~ 9, so a
    # Gaussian z would saturate ~60% of the time; N(0, 1/784) weights give ~1.05 and
    # about 1e-5. The margin leaves room for z's non-Gaussian shape over real images.
    assert large.saturated_fraction > default.saturated_fraction + 0.3
    assert default.saturated_fraction < 0.01
    assert large.preactivation_std > 5 * default.preactivation_std


def test_zero_initialization_never_breaks_symmetry(tables):
    table = tables["zeros"]
    assert [row.distinct_units for row in table] == [1, 1]
    assert table[0].preactivation_std == 0.0 and table[0].predicted_std == 0.0 and table[0].std_ratio is None
    # Zero output weights send no error back: the hidden kernel gets exactly zero gradient.
    assert table[0].kernel_grad_norm == 0.0 and table[1].kernel_grad_norm > 0
    # Any random scheme makes every unit different.
    assert [row.distinct_units for row in tables["nielsen-default"]] == [30, 10]


def test_fields_and_markdown(tables):
    table = tables["nielsen-default"]
    assert isinstance(table, DiagnosticsTable) and len(table) == 2
    assert all(isinstance(row, LayerDiagnostics) for row in table)
    assert [(r.name, r.depth, r.layer_class, r.activation, r.fan_in) for r in table] == [
        ("dense_1", 1, "Dense", "sigmoid", 784),
        ("dense_2", 2, "Dense", "sigmoid", 30),
    ]
    for row in table:
        assert row.dead_fraction is None and 0 <= row.saturated_fraction <= 1
        assert row.std_ratio == pytest.approx(row.preactivation_std / row.predicted_std)
    with pytest.raises(dataclasses.FrozenInstanceError):
        table[0].name = "other"
    markdown = table.to_markdown().splitlines()
    assert len(markdown) == 2 + len(table)
    assert all(f"| {row.depth} | {row.name} | sigmoid |" in line for row, line in zip(table, markdown[2:], strict=True))
    metrics = table.metrics()
    assert metrics["init/layer1/saturated_fraction"] == table[0].saturated_fraction
    assert metrics["init/layer2/preact_std"] == table[1].preactivation_std
    assert not any(key.endswith("/dead_fraction") for key in metrics)
    assert table.by_name("dense_2") is table[1] and table[:1][0] is table[0]


def test_first_layer_input_moment_and_prediction_on_mnist(mnist_val, tables):
    x, _ = mnist_val
    row = tables["nielsen-default"][0]
    assert row.input_second_moment == pytest.approx(float(np.mean(x.astype(np.float64) ** 2)), rel=1e-5)
    # N(0, 1/784) weights, N(0, 1) biases: Var(z) = E[x^2] + 1.
    assert row.predicted_std == pytest.approx(math.sqrt(row.input_second_moment + 1), rel=1e-6)


def test_gradient_norms_only_with_labels(mnist_val, tables):
    x, y = mnist_val
    model = build_mlp([784, 30, 10], scheme="nielsen-default", seed=0)
    assert all(row.kernel_grad_norm is None for row in diagnose(model, x[:100]))
    with pytest.raises(ValueError, match="y_batch"):
        diagnose(model, x[:100], loss="mse")

    # Independent check of the output kernel's gradient: for sigmoid outputs with
    # the summed cross-entropy, dL/dz = a - y, so dL/dW2 = a1^T (a2 - onehot(y)) / B.
    signals = collect_signals(model, x)
    hidden, output = signals[0].activations.astype(np.float64), signals[1].activations.astype(np.float64)
    expected = hidden.T @ (output - np.eye(10)[y]) / len(x)
    table = tables["nielsen-default"]
    assert table[1].kernel_grad_norm == pytest.approx(np.linalg.norm(expected), rel=1e-4)
    assert table[0].kernel_grad_norm > 0
    # An explicit loss is used instead of the default.
    mse = diagnose(model, x[:100], y[:100].astype("float32")[:, None] * np.ones((1, 10), "float32"), loss="mse")
    assert all(row.kernel_grad_norm > 0 for row in mse)


def test_convnet(mnist_val):
    x, y = mnist_val
    model = build_convnet(scheme="he", seed=0)
    table = diagnose(model, x[:300], y[:300])
    assert [(r.name, r.layer_class, r.activation, r.fan_in) for r in table] == [
        ("conv_1", "Conv2D", "relu", 9),
        ("conv_2", "Conv2D", "relu", 72),
        ("dense_out", "Dense", "softmax", 400),
    ]
    assert [r.distinct_units for r in table] == [8, 16, 10]
    for row in table[:2]:
        assert row.saturated_fraction is None and 0 <= row.dead_fraction <= 1
    assert table[2].dead_fraction is None and all(r.kernel_grad_norm > 0 for r in table)
    # z really is the pre-activation of each layer: its activation reproduces the layer's output.
    for signal in collect_signals(model, x[:50]):
        z = signal.preactivations
        expected = np.maximum(z, 0) if signal.activation == "relu" else keras.ops.softmax(z).numpy()
        np.testing.assert_allclose(signal.activations, expected, rtol=1e-5, atol=1e-6)


def test_conv_padding_and_strides_enter_the_prediction():
    # 5x5 kernels with stride 2 and 'same' padding on 6x6 images: an output position
    # sees 4 real rows (and columns) of 5 on average, so a unit's patch holds only
    # 0.64 of the E[x^2] a padding-blind formula would assume. Inputs N(0, 1).
    x = np.random.default_rng(0).standard_normal((1000, 6, 6, 3)).astype("float32")
    inputs = keras.Input((6, 6, 3))
    z = keras.layers.Conv2D(
        256,
        5,
        strides=2,
        padding="same",
        kernel_initializer=init.GlorotUniform(seed=1),
        bias_initializer=init.RandomNormal(stddev=0.3, seed=2),
        activation="tanh",
    )(inputs)
    model = keras.Model(inputs, z)
    (row,) = diagnose(model, x)
    # Independently: TensorFlow's 'same' padding puts 1 row/column before and 2 after
    # (total 2 * (3 - 1) + 5 - 6 = 3); output position i covers rows 2i-1 .. 2i+3.
    padded = np.pad(x.astype(np.float64) ** 2, ((0, 0), (1, 2), (1, 2), (0, 0)))
    patches = [padded[:, 2 * i : 2 * i + 5, 2 * j : 2 * j + 5].sum(axis=(1, 2, 3)) for i in range(3) for j in range(3)]
    assert row.input_second_moment == pytest.approx(np.mean(patches) / 75, rel=1e-5)
    assert row.input_second_moment == pytest.approx(0.64 * np.mean(x.astype(np.float64) ** 2), rel=0.02)
    # Given the batch, the 256 filters are independent draws: the pooled variance is a
    # mean of 256 per-filter terms (see test_theory), sd = sd(per filter) / sqrt(256).
    (signal,) = collect_signals(model, x)
    columns = signal.unit_columns(signal.preactivations).astype(np.float64)
    per_unit = np.mean((columns - columns.mean()) ** 2, axis=1)
    tolerance = SIGMAS * per_unit.std(ddof=1) / math.sqrt(256) + row.predicted_std**2 / 256
    assert abs(row.preactivation_std**2 - row.predicted_std**2) <= tolerance
    assert row.activation == "tanh" and 0 <= row.saturated_fraction < 1


def test_dense_then_activation_layers(mnist_val):
    x, y = mnist_val
    seq = keras.Sequential(
        [
            keras.layers.Dense(40, kernel_initializer=init.RandomNormal(stddev=1.0, seed=1)),
            keras.layers.Activation("sigmoid"),
            keras.layers.Dense(20, kernel_initializer=init.HeNormal(seed=2), bias_initializer="zeros"),
            keras.layers.ReLU(),
            keras.layers.Dense(20, activation="tanh", use_bias=False, kernel_initializer=init.GlorotNormal(seed=3)),
            keras.layers.Dense(10, activation="softmax", kernel_initializer=init.LecunUniform(seed=4)),
        ]
    )  # not built: diagnose builds it for the batch
    x = x.reshape(len(x), 784)  # an unbuilt Sequential model is built for the batch's shape
    table = diagnose(seq, x, y)
    assert [r.activation for r in table] == ["sigmoid", "relu", "tanh", "softmax"]
    signals = collect_signals(seq, x)
    a0 = signals[0].activations
    # z is the exact sum rounded once to float32, a comes from TensorFlow's float32 sum over 784 inputs:
    # they differ by that sum's rounding (a few 1e-6 after the sigmoid).
    np.testing.assert_allclose(a0, 1 / (1 + np.exp(-signals[0].preactivations.astype(np.float64))), atol=1e-5)
    assert table[0].saturated_fraction == pytest.approx(np.mean((a0 < 0.01) | (a0 > 0.99)))
    assert table[1].dead_fraction == np.mean(np.all(signals[1].activations == 0, axis=0))
    assert table[2].saturated_fraction is not None and table[3].saturated_fraction is None
    assert all(r.kernel_grad_norm > 0 for r in table)

    # The same as a functional model; a linear Dense feeding two layers keeps "linear".
    inputs = keras.Input((784,))
    h = keras.layers.Dense(16, name="lin")(inputs)
    a = keras.layers.Activation("tanh", name="act")(h)
    out = keras.layers.Dense(10, activation="sigmoid", name="out")(keras.layers.Concatenate()([a, h]))
    functional = diagnose(keras.Model(inputs, out), x[:100])
    assert [r.activation for r in functional] == ["linear", "sigmoid"]


def test_dense_fast_path_matches_the_layer_copies():
    # For plain Dense layers z and the patch sums come from NumPy, not from copies of the layer:
    # the same numbers as the copies compute (float32 rounding), with and without bias, on 2-D and 3-D inputs.
    rng = np.random.default_rng(0)
    inputs = keras.Input((5, 8))
    hidden = keras.layers.Dense(16, activation="tanh", bias_initializer=init.RandomNormal(seed=1))(inputs)
    outputs = keras.layers.Dense(4, use_bias=False, activation="sigmoid")(keras.layers.Flatten()(hidden))
    model = keras.Model(inputs, outputs)
    x = rng.standard_normal((300, 5, 8)).astype("float32")
    signals = collect_signals(model, x)
    assert [_is_plain_dense(s.layer) for s in signals] == [True, True]
    for signal in signals:
        layer, received = signal.layer, signal.inputs
        twin_z = np.asarray(linear_twin(layer, (None, *received.shape[1:]))(received))
        np.testing.assert_allclose(preactivations(layer, received), twin_z, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(signal.preactivations, twin_z, rtol=1e-5, atol=1e-5)
        ones = _patch_sum_layer(layer, (None, *received.shape[1:]))
        sums, square_sums = _patch_sums(layer, received)
        np.testing.assert_allclose(sums, np.asarray(ones(received))[..., 0], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(square_sums, np.asarray(ones(received * received))[..., 0], rtol=1e-5)

    class Scaled(keras.layers.Dense):  # a subclass may compute something else: it goes through a copy of itself
        pass

    assert not _is_plain_dense(Scaled(3)) and not _is_plain_dense(keras.layers.Dense(3, dtype="mixed_float16"))


def test_a_chain_of_dense_layers_is_run_layer_by_layer_as_its_graph_runs_it(mnist_val):
    # An MLP as build_mlp makes it is run without a probe model: its inputs and activations are those of the
    # model's own graph bit for bit, z is each layer's own (within float32 rounding of the float64 product), the
    # gradient norms are those of the model's own forward pass.
    import tensorflow as tf

    x, y = mnist_val[0][:200], mnist_val[1][:200]
    model = build_mlp([784, 30, 20, 10], activation="tanh", output="softmax", scheme="he", seed=0)
    layers = diagnosed_layers(model)
    assert dense_chain(model, layers)
    graph = keras.Model(model.inputs[0], [layer.input for layer in layers] + [layer.output for layer in layers])
    values = [np.asarray(v) for v in graph(model_input(model, x), training=False)]
    signals = collect_signals(model, x)
    for signal, received, output in zip(signals, values[:3], values[3:], strict=True):
        np.testing.assert_array_equal(signal.inputs, received)
        np.testing.assert_array_equal(signal.activations, output)
        np.testing.assert_allclose(signal.preactivations, preactivations(signal.layer, received), rtol=1e-5, atol=1e-6)
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(default_loss(model)(y, model(model_input(model, x), training=False)))
    expected = [float(tf.norm(g)) for g in tape.gradient(loss, [layer.kernel for layer in layers])]
    assert [row.kernel_grad_norm for row in diagnose(model, x, y)] == pytest.approx(expected, rel=1e-6)
    # Not chains: an Activation layer between two Dense layers, a Dense layer of another dtype policy.
    inputs = keras.Input((784,))
    between = keras.Model(
        inputs, keras.layers.Dense(10)(keras.layers.Activation("relu")(keras.layers.Dense(8)(inputs)))
    )
    half = keras.Model(inputs, keras.layers.Dense(10, dtype="mixed_float16")(inputs))
    assert not dense_chain(between, diagnosed_layers(between)) and not dense_chain(half, diagnosed_layers(half))


def test_unknown_initializer_raises_type_error(mnist_val):
    x, _ = mnist_val
    inputs = keras.Input((784,))
    model = keras.Model(inputs, keras.layers.Dense(10, kernel_initializer=init.Identity())(inputs))
    with pytest.raises(TypeError, match="Identity"):
        diagnose(model, x[:10])


def test_an_overflowing_model_gets_non_finite_statistics_not_errors(mnist_val):
    x, _ = mnist_val
    model = build_mlp([784, 30, 10], activation="relu", output="softmax", scheme="he", seed=0)
    model.layers[1].kernel.assign(np.full((784, 30), 1e38, np.float32))  # z of layer 1 overflows to inf
    with np.errstate(all="raise"):  # no NumPy warning escapes either
        table = diagnose(model, x[:50])
    assert math.isinf(table[0].preactivation_std) or math.isnan(table[0].preactivation_std)
    assert math.isnan(table[1].predicted_std) and table[1].std_ratio is None
    assert "nan" in table.to_markdown()


def test_models_without_dense_layers_are_refused(mnist_val):
    x, _ = mnist_val
    inputs = keras.Input((784,))
    with pytest.raises(ValueError, match="no Dense"):
        diagnose(keras.Model(inputs, keras.layers.Activation("relu")(inputs)), x[:10])
