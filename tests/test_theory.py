"""The variance argument of the texts, checked against closed forms and against samples.

Sampling tolerances. A sample of N i.i.d. draws estimates a variance with
relative standard deviation sqrt((kappa - 1) / N), kappa = E[w^4] / E[w^2]^2
the kurtosis (3 for a Gaussian), estimated here from the sample itself; a mean
of N i.i.d. terms has standard deviation sd / sqrt(N). Every comparison allows
4 such standard deviations (a false alarm about 1 in 15,000 per check for
near-Gaussian estimators). Seeds are fixed, so the tests are deterministic; the
tolerance says how far chance alone could move the sample from the theory.
"""

import math

import keras
import numpy as np
import pytest

from keras_initlab import BiasConstant, InverseSqrtUniform, ScaledGaussian, SparseGaussian, get_scheme, list_schemes
from keras_initlab.theory import (
    SUPPORTED_INITIALIZERS,
    TRUNCATED_NORMAL_VARIANCE_FACTOR,
    predicted_preactivation_std,
    weight_mean,
    weight_variance,
)

init = keras.initializers
SIGMAS = 4.0


def kurtosis(values: np.ndarray) -> float:
    centred = np.asarray(values, dtype=np.float64).ravel()
    centred = centred - centred.mean()
    second = np.mean(centred**2)
    return float(np.mean(centred**4) / second**2) if second > 0 else 1.0


def half_on_input(n: int = 1000) -> np.ndarray:
    """Nielsen's input: 500 of the 1000 inputs are 1, the rest 0, so E[x^2] = 1/2."""
    x = np.zeros(n, dtype=np.float32)
    x[: n // 2] = 1.0
    return x


def sampled_preactivations(kernel, bias, x, units):
    w = np.asarray(kernel(shape=(len(x), units)), dtype=np.float64)
    b = np.asarray(bias(shape=(units,)), dtype=np.float64)
    return x @ w + b


# --------------------------------------------------------------------------- the texts' exercises


def test_nielsen_exercise_std_is_sqrt_3_over_2():
    # 500 inputs on, N(0, 1/1000) weights, N(0, 1) bias: Var(z) = 500/1000 + 1 = 3/2.
    kernel, bias = ScaledGaussian(1.0, seed=1), init.RandomNormal(stddev=1.0, seed=2)
    predicted = predicted_preactivation_std(kernel, bias, 0.5, (1000, 30))
    assert predicted == pytest.approx(math.sqrt(3 / 2), rel=1e-12)

    # One z per unit, all independent and Gaussian: the sample variance of U of
    # them has relative sd sqrt(2 / U).
    units = 4000
    z = sampled_preactivations(kernel, bias, half_on_input(), units)
    assert abs(z.var() / predicted**2 - 1) <= SIGMAS * math.sqrt(2 / units)


def test_nielsen_large_weights_give_std_sqrt_501():
    # N(0, 1) weights and bias: Var(z) = 500 + 1, so |z| >> 1 and sigmoid units saturate.
    kernel, bias = get_scheme("nielsen-large", seed=3)
    predicted = predicted_preactivation_std(kernel, bias, 0.5, (1000, 30))
    assert predicted == pytest.approx(math.sqrt(501), rel=1e-12)

    units = 4000
    z = sampled_preactivations(kernel, bias, half_on_input(), units)
    assert abs(z.var() / predicted**2 - 1) <= SIGMAS * math.sqrt(2 / units)


@pytest.mark.parametrize("fan_in", [10, 784, 4096])
def test_inverse_sqrt_uniform_gives_variance_one_third(fan_in):
    # U(-1/sqrt(n), 1/sqrt(n)) has Var(w) = 1/(3n); with E[x^2] = 1: Var(z) = 1/3, whatever n.
    std = predicted_preactivation_std(InverseSqrtUniform(), init.Zeros(), 1.0, (fan_in, 7))
    assert std**2 == pytest.approx(1 / 3, rel=1e-12)


@pytest.mark.parametrize("second_moment", [0.1, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("shape", [(784, 30), (3, 3, 16, 32)])
def test_sparse10_keeps_the_input_second_moment(second_moment, shape):
    # 10 nonzero N(0, 1/10) weights per unit: Var(z) = 10 * (1/10) * E[x^2] = E[x^2].
    std = predicted_preactivation_std(SparseGaussian(10), init.Zeros(), second_moment, shape)
    assert std**2 == pytest.approx(second_moment, rel=1e-12)


def test_conv_fan_in_is_receptive_field_times_in_channels():
    # He normal on a 3x3x16 patch: Var(w) = 2 / 144, so Var(z) = 2 E[x^2].
    assert weight_variance(init.HeNormal(), (3, 3, 16, 32)) == pytest.approx(2 / 144)
    assert predicted_preactivation_std(init.HeNormal(), None, 1.5, (3, 3, 16, 32)) ** 2 == pytest.approx(3.0)
    # Glorot averages fan_in = 144 and fan_out = 288.
    assert weight_variance(init.GlorotUniform(), (3, 3, 16, 32)) == pytest.approx(2 / (144 + 288))


def test_named_and_preset_initializers():
    assert weight_variance("he_normal", (100, 10)) == pytest.approx(0.02)
    assert weight_variance(init.LecunNormal(), (50, 10)) == pytest.approx(1 / 50)
    assert weight_variance(ScaledGaussian(2.0, mode="fan_out"), (50, 10)) == pytest.approx(4 / 10)
    assert weight_variance(InverseSqrtUniform(3.0, mode="fan_avg"), (50, 10)) == pytest.approx(9 / (3 * 30))
    # Keras widens its truncated draw so the variance after truncation is exactly scale / fan.
    assert weight_variance(init.VarianceScaling(2.0, "fan_in", "truncated_normal"), (8, 4)) == pytest.approx(0.25)
    assert TRUNCATED_NORMAL_VARIANCE_FACTOR == pytest.approx(0.87962566103423978**2, rel=1e-12)
    assert weight_variance(init.TruncatedNormal(stddev=2.0), (5, 5)) == pytest.approx(4 * 0.77374130, rel=1e-7)


def test_means_and_constants():
    assert weight_mean(init.RandomNormal(mean=0.3, stddev=1.0), (4, 4)) == 0.3
    assert weight_mean(init.RandomUniform(0.0, 1.0), (4, 4)) == 0.5
    assert weight_variance(init.RandomUniform(0.0, 1.0), (4, 4)) == pytest.approx(1 / 12)
    for constant, value in [(init.Zeros(), 0.0), (init.Ones(), 1.0), (init.Constant(0.2), 0.2), (BiasConstant(), 0.01)]:
        assert weight_mean(constant, (3,)) == pytest.approx(value)
        assert weight_variance(constant, (3,)) == 0.0
    # A zero kernel: all of Var(z) is the bias'.
    assert predicted_preactivation_std(init.Zeros(), init.RandomNormal(stddev=0.5), 1.0, (10, 3)) == 0.5
    # A constant kernel c: every unit computes c * S, S = sum of its inputs: Var(z) = c^2 Var(S) + Var(b).
    bias = init.RandomNormal(stddev=0.3)
    std = predicted_preactivation_std(init.Constant(0.1), bias, 1.0, (10, 3), input_sum_variance=4.0)
    assert std**2 == pytest.approx(0.1**2 * 4.0 + 0.3**2)
    # A bias mean shifts z but does not widen it.
    shifted = init.RandomNormal(mean=5.0, stddev=0.3)
    assert predicted_preactivation_std(init.Zeros(), shifted, 1.0, (10, 3)) == pytest.approx(0.3)


def test_nonzero_kernel_mean_needs_the_input_sum_variance():
    with pytest.raises(ValueError, match="input_sum_variance"):
        predicted_preactivation_std(init.RandomNormal(mean=0.1), init.Zeros(), 1.0, (10, 3))
    with pytest.raises(ValueError, match="input_sum_variance"):
        predicted_preactivation_std(init.Ones(), None, 1.0, (10, 3))


def test_unknown_initializer_is_a_type_error_naming_it():
    class Mystery(init.Initializer):
        def __call__(self, shape, dtype=None):
            return keras.ops.ones(shape)

    for unknown in (Mystery(), init.Identity()):
        with pytest.raises(TypeError) as error:
            weight_variance(unknown, (4, 4))
        message = str(error.value)
        assert type(unknown).__name__ in message
        assert all(cls.__name__ in message for cls in SUPPORTED_INITIALIZERS)
    with pytest.raises(TypeError, match="Mystery"):
        predicted_preactivation_std(init.HeNormal(), Mystery(), 1.0, (4, 4))


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_second_moment"):
        predicted_preactivation_std(init.HeNormal(), None, -1.0, (4, 4))
    with pytest.raises(ValueError, match="rank >= 2"):
        predicted_preactivation_std(init.HeNormal(), None, 1.0, (4,))


# --------------------------------------------------------------------------- against samples


WEIGHT_CASES = {
    "ScaledGaussian": (ScaledGaussian(1.5, seed=0), (400, 300)),
    "InverseSqrtUniform": (InverseSqrtUniform(seed=0), (400, 300)),
    "SparseGaussian": (SparseGaussian(10, seed=0), (400, 300)),
    "GlorotUniform": (init.GlorotUniform(seed=0), (3, 3, 40, 300)),
    "GlorotNormal": (init.GlorotNormal(seed=0), (400, 300)),
    "HeNormal": (init.HeNormal(seed=0), (400, 300)),
    "LecunUniform": (init.LecunUniform(seed=0), (400, 300)),
    "TruncatedNormal": (init.TruncatedNormal(mean=0.2, stddev=0.5, seed=0), (400, 300)),
    "RandomNormal": (init.RandomNormal(mean=-0.1, stddev=0.3, seed=0), (400, 300)),
    "RandomUniform": (init.RandomUniform(-0.2, 0.6, seed=0), (400, 300)),
    "Orthogonal": (init.Orthogonal(gain=2.0, seed=0), (200, 600)),
    "GlorotUniform-bias": (init.GlorotUniform(seed=0), (120000,)),  # rank 1: fan = n, as Keras
}


@pytest.mark.parametrize("name", WEIGHT_CASES)
def test_weight_moments_match_keras_draws(name):
    initializer, shape = WEIGHT_CASES[name]
    w = np.asarray(initializer(shape=shape), dtype=np.float64).ravel()
    n = w.size
    variance, mean = weight_variance(initializer, shape), weight_mean(initializer, shape)
    # Sample variance: relative sd sqrt((kappa - 1) / n); sample mean: sd sqrt(variance / n).
    assert abs(w.var() / variance - 1) <= SIGMAS * math.sqrt((kurtosis(w) - 1) / n)
    assert abs(w.mean() - mean) <= SIGMAS * math.sqrt(variance / n)


def check_measured_against_predicted(kernel, bias, x, units, note=""):
    """Draws a (n, units) layer, applies it to the batch ``x`` and compares the pooled Var(z).

    Tolerance. The prediction is made from this batch's own E[x^2] and Var(S), so,
    given the batch, the only randomness left is the draw of the layer. Its units
    are independent draws (independent columns and biases), so the pooled sample
    variance is the mean over units of each unit's mean square deviation m_j, with
    standard deviation sd(m_j) / sqrt(U) (central limit theorem over U = 1000 units),
    estimated from the m_j themselves. Subtracting the grand mean biases it
    down by about Var(z) / U. A wrong variance formula (a missing factor 1/3,
    0.77 or a mean^2 term) is off by far more than this.
    """
    n = x.shape[1]
    w = np.asarray(kernel(shape=(n, units)), dtype=np.float64)
    b = np.asarray(bias(shape=(units,)), dtype=np.float64)
    z = x @ w + b
    second_moment, sum_variance = float(np.mean(x**2)), float(np.var(x.sum(axis=1)))
    predicted = predicted_preactivation_std(kernel, bias, second_moment, (n, units), input_sum_variance=sum_variance)
    if predicted == 0:
        assert np.all(z == z.flat[0]), note  # zero variance predicted: every z is the same
        return
    per_unit = np.mean((z - z.mean()) ** 2, axis=0)
    tolerance = SIGMAS * per_unit.std(ddof=1) / math.sqrt(units) + predicted**2 / units
    assert abs(per_unit.mean() - predicted**2) <= tolerance, (note, z.std(), predicted, tolerance)


@pytest.fixture(scope="module")
def gaussian_inputs():
    return np.random.default_rng(0).standard_normal((2000, 500))


@pytest.mark.parametrize("scheme", list(list_schemes()))
def test_every_scheme_measured_std_matches_prediction(scheme, gaussian_inputs):
    kernel, bias = get_scheme(scheme, seed=11)
    check_measured_against_predicted(kernel, bias, gaussian_inputs, units=1000, note=scheme)


KERAS_PAIRS = {
    "GlorotUniform": (init.GlorotUniform(seed=5), init.Zeros()),
    "HeNormal": (init.HeNormal(seed=5), init.RandomNormal(stddev=0.5, seed=6)),
    "TruncatedNormal": (init.TruncatedNormal(stddev=0.05, seed=5), init.Zeros()),
    "RandomUniform": (init.RandomUniform(-0.05, 0.05, seed=5), init.RandomUniform(-1.0, 1.0, seed=6)),
    "Orthogonal": (init.Orthogonal(seed=5), init.Zeros()),
}


@pytest.mark.parametrize("name", KERAS_PAIRS)
def test_keras_initializers_measured_std_matches_prediction(name, gaussian_inputs):
    kernel, bias = KERAS_PAIRS[name]
    check_measured_against_predicted(kernel, bias, gaussian_inputs, units=1000, note=name)


@pytest.mark.parametrize(
    "kernel",
    [init.RandomNormal(mean=0.02, stddev=0.05, seed=7), init.RandomUniform(0.0, 0.1, seed=7), init.Constant(0.03)],
    ids=["RandomNormal-mean", "RandomUniform-positive", "Constant"],
)
def test_kernel_mean_term_on_positive_inputs(kernel):
    # Pixel-like inputs in [0, 1]: the mean(w)^2 Var(S) term is a large part of Var(z) here.
    x = np.random.default_rng(1).uniform(0.0, 1.0, (2000, 500))
    check_measured_against_predicted(kernel, init.RandomNormal(stddev=0.1, seed=8), x, units=1000)
