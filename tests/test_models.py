"""Model factory: seeding, initializers per layer, losses, L2, and Nielsen's update rule."""

import math

import keras
import numpy as np
import pytest

from keras_initlab import BiasConstant, ScaledGaussian
from keras_initlab.data import Dataset
from keras_initlab.models import build_convnet, build_mlp, default_loss, summed_sigmoid_crossentropy
from keras_initlab.training import train


def weights(model):
    return [w.numpy() for w in model.weights]


def test_one_seed_reproduces_the_whole_model_and_layers_differ():
    a = build_mlp([50, 50, 50, 10], scheme="nielsen-default", seed=3)
    b = build_mlp([50, 50, 50, 10], scheme="nielsen-default", seed=3)
    for wa, wb in zip(weights(a), weights(b), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.layers[1].kernel.numpy(), a.layers[2].kernel.numpy())
    assert not np.array_equal(a.layers[1].kernel.numpy(), build_mlp([50, 50, 50, 10], seed=4).layers[1].kernel.numpy())


def test_every_layer_gets_the_schemes_distribution():
    model = build_mlp([784, 100, 30, 10], scheme="he", activation="relu", seed=0)
    for layer in model.layers[1:]:
        w = layer.kernel.numpy().astype(np.float64)
        fan_in = w.shape[0]
        assert abs(w.var() - 2 / fan_in) < 5 * (2 / fan_in) * math.sqrt(2 / w.size)
        np.testing.assert_array_equal(layer.bias.numpy(), np.full(layer.units, np.float32(0.01)))


def test_an_explicit_pair_is_cloned_and_reseeded_per_layer():
    kernel, bias = ScaledGaussian(seed=1), BiasConstant(0.5)
    model = build_mlp([20, 20, 20], scheme=(kernel, bias), seed=0)
    k1, k2 = model.layers[1].kernel, model.layers[2].kernel
    assert model.layers[1].kernel_initializer is not kernel
    assert not np.array_equal(k1.numpy(), k2.numpy())
    assert np.all(model.layers[2].bias.numpy() == 0.5)
    assert model.name == "mlp_ScaledGaussian_BiasConstant"


def test_convnet_fans_follow_the_receptive_field():
    model = build_convnet(filters=(16, 32), scheme="nielsen-default", seed=0)
    conv2 = model.get_layer("conv_2").kernel.numpy().astype(np.float64)
    assert conv2.shape == (3, 3, 16, 32)
    fan_in = 3 * 3 * 16
    assert abs(conv2.var() - 1 / fan_in) < 5 * (1 / fan_in) * math.sqrt(2 / conv2.size)


def test_summed_sigmoid_crossentropy_sums_over_outputs():
    y = np.array([2, 0])
    a = np.array([[0.2, 0.3, 0.6], [0.9, 0.1, 0.5]], dtype=np.float32)
    onehot = np.eye(3)[y]
    expected = -(onehot * np.log(a) + (1 - onehot) * np.log(1 - a)).sum(axis=1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(summed_sigmoid_crossentropy(y, a)), expected, rtol=1e-5)


def test_default_loss_follows_the_output_units():
    assert default_loss(build_mlp([4, 3], output="sigmoid", seed=0)) is summed_sigmoid_crossentropy
    assert default_loss(build_mlp([4, 3], output="softmax", seed=0)) is keras.losses.sparse_categorical_crossentropy


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_one_sgd_step_matches_nielsens_update_computed_by_hand():
    rng = np.random.default_rng(0)
    n_train, eta, lam, batch = 50, 0.1, 5.0, 10
    x = rng.random((batch, 2, 2, 1)).astype(np.float32)
    y = rng.integers(0, 3, batch).astype(np.int32)
    data = Dataset("tiny", x, y, x[:2], y[:2], 3, "test", "none")
    model = build_mlp([4, 5, 3], scheme="nielsen-large", l2_lambda=lam, n_train=n_train, seed=1)
    w1, b1, w2, b2 = [w.astype(np.float64) for w in weights(model)]

    # Backpropagation for sigmoid units and the cross-entropy summed over outputs, mean over the batch.
    xs, t = x.reshape(batch, 4).astype(np.float64), np.eye(3)[y]
    h = sigmoid(xs @ w1 + b1)
    a = sigmoid(h @ w2 + b2)
    delta2 = (a - t) / batch
    delta1 = (delta2 @ w2.T) * h * (1 - h)
    decay = 1 - eta * lam / n_train
    expected = [
        decay * w1 - eta * xs.T @ delta1,
        b1 - eta * delta1.sum(axis=0),
        decay * w2 - eta * h.T @ delta2,
        b2 - eta * delta2.sum(axis=0),
    ]
    train(model, data, epochs=1, batch_size=batch, learning_rate=eta, seed=0)  # exactly one step
    for got, want in zip(weights(model), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(weights(model)[0], w1)  # the step did move the weights


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"sizes": [784]}, ValueError, r"`sizes` must be a list of at least 2 int\(s\) >= 1. Received: sizes=\[784\]"),
        ({"sizes": [784, 0, 10]}, ValueError, r"`sizes\[1\]` must be an int >= 1. Received: sizes\[1\]=0"),
        ({"output": "tanh"}, ValueError, r"`output` must be one of \('sigmoid', 'softmax'\)"),
        ({"scheme": "sparce10"}, ValueError, "Unknown scheme 'sparce10'"),
        ({"scheme": 3}, TypeError, "`scheme` must be a scheme name or a"),
        ({"l2_lambda": -1.0}, ValueError, "`l2_lambda` must be a finite number >= 0"),
        ({"l2_lambda": 5.0}, ValueError, "needs the training-set size"),
        ({"seed": "0"}, TypeError, "`seed` must be an int or None"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        build_mlp(**kwargs)


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match="relux"):
        build_mlp(activation="relux")
