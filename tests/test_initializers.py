"""Statistics, seeding, dtypes and argument checks of keras_initlab.initializers.

Tolerances: for n i.i.d. draws with variance s2 the sample mean has standard
error sqrt(s2 / n) and the sample variance sqrt((mu4 - s2**2) / n) (Gaussian:
mu4 = 3 s2**2; uniform: mu4 = 9/5 s2**2). Every check allows Z standard errors
with fixed seeds.
"""

import math

import keras
import numpy as np
import pytest

from keras_initlab import BiasConstant, InverseSqrtUniform, ScaledGaussian, SparseGaussian, compute_fans

Z = 5.0  # standard errors allowed
SHAPES = [(784, 30), (1000, 1000), (3, 3, 16, 32)]


def sample(init, shape, dtype="float32"):
    return np.asarray(keras.ops.convert_to_numpy(init(shape, dtype=dtype)), dtype=np.float64)


def assert_moments(w, var, mu4_over_var2):
    n = w.size
    assert abs(w.mean()) < Z * math.sqrt(var / n), (w.mean(), var, n)
    assert abs(w.var() - var) < Z * var * math.sqrt((mu4_over_var2 - 1) / n), (w.var(), var, n)


@pytest.mark.parametrize("shape", SHAPES)
def test_compute_fans_matches_keras(shape):
    from keras.src.initializers.random_initializers import compute_fans as keras_fans

    assert compute_fans(shape) == keras_fans(shape)


def test_conv_fans_are_receptive_field_times_channels():
    assert compute_fans((3, 3, 16, 32)) == (3 * 3 * 16, 3 * 3 * 32)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gain", [1.0, math.sqrt(2.0)])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_scaled_gaussian_moments(shape, gain, mode):
    fan_in, fan_out = compute_fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    w = sample(ScaledGaussian(gain, mode=mode, seed=1), shape)
    assert_moments(w, gain**2 / fan, 3.0)


def test_scaled_gaussian_is_untruncated():
    # N(0, 1/1000) over 10^6 draws: about 2.7e3 values beyond 3 std; a
    # truncated normal (Keras' "normal") has none beyond 2 std.
    w = sample(ScaledGaussian(seed=2), (1000, 1000))
    std = 1 / math.sqrt(1000)
    assert (np.abs(w) > 3 * std).mean() > 0.002


@pytest.mark.parametrize("shape", SHAPES)
def test_inverse_sqrt_uniform_bounds_and_variance(shape):
    fan_in, _ = compute_fans(shape)
    bound = 1 / math.sqrt(fan_in)
    w = sample(InverseSqrtUniform(seed=3), shape)
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > 0.99 * bound  # the range is used up to the bound
    assert_moments(w, bound**2 / 3, 9 / 5)


@pytest.mark.parametrize("shape", SHAPES)
def test_sparse_exactly_k_nonzeros_per_unit(shape):
    fan_in, _ = compute_fans(shape)
    w = sample(SparseGaussian(10, seed=4), shape).reshape(fan_in, shape[-1])
    assert ((w != 0).sum(axis=0) == 10).all()
    supports = {tuple(np.flatnonzero(col)) for col in w.T}
    assert len(supports) == shape[-1]  # positions differ between units


def test_sparse_nonzero_values_have_the_right_std():
    w = sample(SparseGaussian(10, stddev=0.5, seed=5), (1000, 1000))
    nonzero = w[w != 0]
    assert nonzero.size == 10 * 1000
    assert_moments(nonzero, 0.25, 3.0)


def test_sparse_default_stddev_is_inverse_sqrt_connections():
    nonzero = sample(SparseGaussian(10, seed=6), (1000, 1000))
    nonzero = nonzero[nonzero != 0]
    assert_moments(nonzero, 1 / 10, 3.0)


def test_sparse_positions_are_uniform_over_inputs():
    # 20,000 units x 10 picks over 100 inputs: each input is picked
    # Binomial(20000, 0.1) times: mean 2000, std sqrt(20000*0.1*0.9) ~ 42.4.
    w = sample(SparseGaussian(10, seed=7), (100, 20000))
    counts = (w != 0).sum(axis=1)
    assert np.abs(counts - 2000).max() < Z * math.sqrt(20000 * 0.1 * 0.9)


def test_sparse_connections_equal_to_fan_in_fills_every_weight():
    w = sample(SparseGaussian(4, seed=8), (4, 50))
    assert (w != 0).all()


def test_sparse_connections_above_fan_in_names_the_shape():
    with pytest.raises(ValueError, match=r"shape=\(5, 3\).*fan_in=5"):
        SparseGaussian(10, seed=0)((5, 3))


def test_bias_constant_fills_any_shape():
    assert np.all(sample(BiasConstant(), (7,)) == np.float32(0.01))
    assert np.all(sample(BiasConstant(-2.5), (2, 3, 4)) == -2.5)
    assert sample(BiasConstant(), ()).shape == ()


# -- dtypes -------------------------------------------------------------------------

ALL = [
    lambda: ScaledGaussian(seed=1),
    lambda: InverseSqrtUniform(seed=1),
    lambda: SparseGaussian(seed=1),
    lambda: BiasConstant(),
]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("make", ALL)
def test_float_dtypes(make, dtype):
    w = make()((100, 50), dtype=dtype)
    assert keras.backend.standardize_dtype(w.dtype) == dtype
    assert np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(w, "float32"))).all()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_sparse_structure_holds_in_every_dtype(dtype):
    w = keras.ops.convert_to_numpy(keras.ops.cast(SparseGaussian(10, seed=9)((784, 30), dtype=dtype), "float32"))
    assert ((w != 0).sum(axis=0) == 10).all()


def test_default_dtype_is_floatx():
    assert keras.backend.standardize_dtype(ScaledGaussian(seed=0)((4, 4)).dtype) == keras.backend.floatx()


@pytest.mark.parametrize("make", ALL)
def test_integer_dtype_is_rejected(make):
    with pytest.raises(TypeError, match="dtype=int32"):
        make()((4, 4), dtype="int32")


# -- seeding (Keras 3 semantics) ---------------------------------------------------

FAN_BASED = [ScaledGaussian, InverseSqrtUniform, SparseGaussian]


@pytest.mark.parametrize("cls", FAN_BASED)
def test_int_seed_is_deterministic_across_instances_and_calls(cls):
    a, b = cls(seed=42), cls(seed=42)
    np.testing.assert_array_equal(sample(a, (50, 20)), sample(a, (50, 20)))
    np.testing.assert_array_equal(sample(a, (50, 20)), sample(b, (50, 20)))
    assert not np.array_equal(sample(a, (50, 20)), sample(cls(seed=43), (50, 20)))


@pytest.mark.parametrize("cls", FAN_BASED)
def test_none_seed_is_drawn_once_per_instance(cls):
    a = cls()
    np.testing.assert_array_equal(sample(a, (50, 20)), sample(a, (50, 20)))
    assert not np.array_equal(sample(a, (50, 20)), sample(cls(), (50, 20)))


@pytest.mark.parametrize("cls", FAN_BASED)
def test_seed_generator_gives_fresh_values_per_call_reproducibly(cls):
    a = cls(seed=keras.random.SeedGenerator(5))
    first, second = sample(a, (50, 20)), sample(a, (50, 20))
    assert not np.array_equal(first, second)
    again = cls(seed=keras.random.SeedGenerator(5))
    np.testing.assert_array_equal(first, sample(again, (50, 20)))


def test_reusing_one_int_seeded_instance_gives_identical_layers():
    init = ScaledGaussian(seed=3)
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(20, kernel_initializer=init),
            keras.layers.Dense(20, kernel_initializer=init),
        ]
    )
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), model.layers[1].kernel.numpy())


def test_reusing_one_seed_generator_instance_gives_different_layers():
    init = ScaledGaussian(seed=keras.random.SeedGenerator(3))
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(20, kernel_initializer=init),
            keras.layers.Dense(20, kernel_initializer=init),
        ]
    )
    assert not np.array_equal(model.layers[0].kernel.numpy(), model.layers[1].kernel.numpy())


# -- argument checks ------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ScaledGaussian, InverseSqrtUniform])
@pytest.mark.parametrize("gain", [0, -1.0, float("inf"), float("nan")])
def test_bad_gain(cls, gain):
    with pytest.raises(ValueError, match=r"`gain` must be a positive finite number. Received: gain="):
        cls(gain=gain)


@pytest.mark.parametrize("cls", [ScaledGaussian, InverseSqrtUniform])
@pytest.mark.parametrize("gain", ["1", None, True])
def test_non_numeric_gain(cls, gain):
    with pytest.raises(TypeError, match="`gain`"):
        cls(gain=gain)


@pytest.mark.parametrize("cls", [ScaledGaussian, InverseSqrtUniform])
def test_unknown_mode(cls):
    with pytest.raises(
        ValueError, match=r"`mode` must be one of \('fan_in', 'fan_out', 'fan_avg'\). Received: mode='fan'"
    ):
        cls(mode="fan")


@pytest.mark.parametrize("stddev", [0.0, -0.1, float("inf"), float("nan")])
def test_bad_stddev(stddev):
    with pytest.raises(ValueError, match="`stddev` must be a positive finite number"):
        SparseGaussian(stddev=stddev)


@pytest.mark.parametrize("connections", [0, -3])
def test_connections_below_one(connections):
    with pytest.raises(ValueError, match=rf"`connections` must be an int >= 1. Received: connections={connections}"):
        SparseGaussian(connections=connections)


@pytest.mark.parametrize("connections", [2.5, 10.0, "10", True])
def test_connections_not_an_int(connections):
    with pytest.raises(TypeError, match="`connections` must be an int >= 1"):
        SparseGaussian(connections=connections)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_bias_constant_non_finite(value):
    with pytest.raises(ValueError, match="`value` must be a finite number"):
        BiasConstant(value)


@pytest.mark.parametrize("cls", FAN_BASED)
@pytest.mark.parametrize("shape", [(), (10,)])
def test_fan_based_initializers_reject_rank_below_two(cls, shape):
    with pytest.raises(ValueError, match=r"rank >= 2"):
        cls(seed=0)(shape)


def test_bad_seed_type():
    with pytest.raises(TypeError, match="`seed`"):
        SparseGaussian(seed="0")
