"""Schemes, and the arithmetic of the initialization texts checked on sampled weights."""

import math

import keras
import numpy as np
import pytest

import keras_initlab
from keras_initlab import get_scheme, list_schemes

BUILT_IN = [
    "nielsen-default",
    "nielsen-large",
    "uniform-inv-sqrt",
    "he",
    "glorot",
    "lecun",
    "sparse10",
    "small",
    "zeros",
]
UNITS = 10_000  # independent hidden units, one z each
Z = 5.0


def weighted_inputs(scheme, x, seed=0):
    """z = x @ W + b for UNITS units initialized by `scheme` (one sample of z per unit)."""
    kernel, bias = get_scheme(scheme, seed=seed)
    w = keras.ops.convert_to_numpy(kernel((x.size, UNITS))).astype(np.float64)
    b = keras.ops.convert_to_numpy(bias((UNITS,))).astype(np.float64)
    return x @ w + b


def test_every_built_in_scheme_is_listed_with_a_description():
    schemes = list_schemes()
    assert set(BUILT_IN) <= set(schemes)
    assert all(isinstance(d, str) and d for d in schemes.values())


@pytest.mark.parametrize("name", BUILT_IN)
def test_get_scheme_returns_fresh_keras_initializers(name):
    first, second = get_scheme(name), get_scheme(name)
    for a, b in zip(first, second, strict=True):
        assert isinstance(a, keras.initializers.Initializer)
        assert a is not b


def test_scheme_seed_reproduces_and_separates_kernel_and_bias():
    k1, b1 = get_scheme("nielsen-large", seed=7)
    k2, b2 = get_scheme("nielsen-large", seed=7)
    np.testing.assert_array_equal(k1((30, 30)), k2((30, 30)))
    np.testing.assert_array_equal(b1((30,)), b2((30,)))
    assert not np.array_equal(k1((1, 30))[0], b1((30,)))


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown scheme 'sparce10'; known: .*sparse10"):
        get_scheme("sparce10")


def test_nielsen_default_gives_std_sqrt_3_over_2_with_500_of_1000_inputs_on():
    # Var(z) = 500 * (1/1000) + 1 = 3/2; SE of a std over N samples ~ std / sqrt(2N).
    x = np.zeros(1000)
    x[:500] = 1.0
    z = weighted_inputs("nielsen-default", x)
    expected = math.sqrt(1.5)
    assert abs(z.std() - expected) < Z * expected / math.sqrt(2 * UNITS)


def test_nielsen_large_gives_std_sqrt_501_with_500_of_1000_inputs_on():
    x = np.zeros(1000)
    x[:500] = 1.0
    z = weighted_inputs("nielsen-large", x)
    expected = math.sqrt(501)
    assert abs(z.std() - expected) < Z * expected / math.sqrt(2 * UNITS)


def test_uniform_inv_sqrt_gives_variance_one_third_with_unit_variance_inputs():
    # x = +-1: E[x^2] = 1 exactly. Var(z) = n * (1/n)/3 = 1/3; SE of a variance ~ var * sqrt(2/N).
    x = np.random.default_rng(0).choice([-1.0, 1.0], size=784)
    z = weighted_inputs("uniform-inv-sqrt", x)
    assert abs(z.var() - 1 / 3) < Z * (1 / 3) * math.sqrt(2 / UNITS)


def test_sparse10_preserves_the_input_second_moment():
    x = np.random.default_rng(1).choice([-1.0, 1.0], size=784)
    z = weighted_inputs("sparse10", x)
    assert abs(z.var() - 1.0) < Z * math.sqrt(2 / UNITS)


def test_he_doubles_the_variance_and_sets_biases_to_one_hundredth():
    kernel, bias = get_scheme("he", seed=0)
    assert np.all(keras.ops.convert_to_numpy(bias((5,))) == np.float32(0.01))
    x = np.random.default_rng(2).choice([-1.0, 1.0], size=784)
    z = weighted_inputs("he", x) - 0.01
    assert abs(z.var() - 2.0) < Z * 2.0 * math.sqrt(2 / UNITS)


@pytest.mark.parametrize(
    "name, variance", [("glorot", lambda n_in, n_out: 2 / (n_in + n_out)), ("lecun", lambda n_in, n_out: 1 / n_in)]
)
def test_glorot_and_lecun_are_the_keras_variances_with_zero_bias(name, variance):
    kernel, bias = get_scheme(name, seed=0)
    assert not np.any(keras.ops.convert_to_numpy(bias((10,))))
    w = keras.ops.convert_to_numpy(kernel((784, 300))).astype(np.float64)
    expected = variance(784, 300)  # Keras rescales its truncated normal to this variance
    assert abs(w.var() - expected) < Z * expected * math.sqrt(2 / w.size)  # SE of a variance ~ var * sqrt(2/N)


def test_zeros_and_small():
    k, b = get_scheme("zeros")
    assert not np.any(keras.ops.convert_to_numpy(k((10, 10)))) and not np.any(keras.ops.convert_to_numpy(b((10,))))
    w = keras.ops.convert_to_numpy(get_scheme("small", seed=0).kernel((1000, 100))).astype(np.float64)
    assert abs(w.std() - 0.01) < Z * 0.01 / math.sqrt(2 * w.size)


def test_public_api_is_importable_from_the_package():
    for name in [
        "ScaledGaussian",
        "InverseSqrtUniform",
        "SparseGaussian",
        "BiasConstant",
        "get_scheme",
        "list_schemes",
        "Scheme",
    ]:
        assert hasattr(keras_initlab, name)


def test_scheme_hands_out_new_initializers_and_refuses_bad_schemes():
    scheme = keras_initlab.Scheme("he", seed=None)  # seeds drawn once, when the scheme is made
    first, second = scheme.kernel(), scheme.kernel()
    assert first is not second
    assert not np.array_equal(first((20, 20)), second((20, 20)))
    np.testing.assert_array_equal(first((20, 20)), first((20, 20)))  # each is an int-seeded Keras initializer
    assert repr(keras_initlab.Scheme("he", 3)) == "Scheme('he', seed=3)"
    with pytest.raises(ValueError, match=r"Unknown scheme 'sparce10'; known: .*sparse10"):
        keras_initlab.Scheme("sparce10")
    with pytest.raises(TypeError, match=r"`scheme` must be a scheme name or a \(kernel, bias\) pair"):
        keras_initlab.Scheme((keras.initializers.Zeros(),))
