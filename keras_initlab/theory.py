"""The variance argument of the initialization texts, as numbers.

A unit computes ``z = sum_i w_i x_i + b`` over its ``fan_in`` inputs (a Dense
kernel column, or one output channel of a conv kernel over one receptive-field
patch). With the weights drawn i.i.d. with mean ``mu_w`` and variance
``Var(w)``, independently of the inputs, and the bias drawn with mean ``mu_b``
and variance ``Var(b)``, the spread of ``z`` over units and examples is

    Var(z) = fan_in * Var(w) * E[x**2]  +  mu_w**2 * Var(S)  +  Var(b),
    E[z]   = mu_w * E[S] + mu_b,            S = sum_i x_i  (the patch sum).

For the zero-mean kernels of every practical scheme the middle term vanishes
and this is the familiar ``Var(z) = fan_in * Var(w) * E[x**2] + Var(b)``: too
large and sigmoid/tanh units saturate, too small and the signal dies out with
depth. ``E[x**2]`` is the raw second moment (not the variance) of the inputs.

>>> from keras_initlab import ScaledGaussian
>>> import keras
>>> predicted_preactivation_std(ScaledGaussian(1.0), keras.initializers.RandomNormal(stddev=1.0),
...                             input_second_moment=0.5, shape=(1000, 30))   # sqrt(3/2)
1.224744871391589

`weight_variance` (and `weight_mean`) hold the per-weight math of every
supported initializer; `predicted_preactivation_std` only combines them.

Data-dependent initialization has no such prediction: after `keras_initlab.lsuv` a
kernel's scale comes from the batch it was measured on, not from its initializer, so
`keras_initlab.diagnose(..., predict=False)` reports the measured values with the
prediction marked not applicable (``-``), which is what comparisons do for the ``lsuv`` scheme.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras

from keras_initlab.checks import check_number
from keras_initlab.initializers import (
    InverseSqrtUniform,
    ScaledGaussian,
    SparseGaussian,
    compute_fans,
)

__all__ = [
    "SUPPORTED_INITIALIZERS",
    "TRUNCATED_NORMAL_VARIANCE_FACTOR",
    "predicted_preactivation_std",
    "weight_mean",
    "weight_variance",
]

_inits = keras.initializers

TRUNCATED_NORMAL_VARIANCE_FACTOR = 1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi) / math.erf(math.sqrt(2.0))
"""Variance of a unit normal truncated at +-2 std: ``1 - 2*2*phi(2) / (Phi(2) - Phi(-2))`` = 0.77374...

TensorFlow's truncated normal (and so Keras' ``TruncatedNormal``) re-draws
values more than two standard deviations from the mean.
"""

# Keras' VarianceScaling divides the truncated normal's stddev by this constant
# (keras/src/initializers/random_initializers.py) so that its variance is scale / fan.
_KERAS_TRUNCATION_STD = 0.87962566103423978

SUPPORTED_INITIALIZERS: tuple[type, ...] = (
    _inits.VarianceScaling,  # ScaledGaussian, InverseSqrtUniform, Glorot*, He*, Lecun*
    SparseGaussian,
    _inits.RandomNormal,
    _inits.TruncatedNormal,
    _inits.RandomUniform,
    _inits.Orthogonal,
    _inits.Zeros,
    _inits.Ones,
    _inits.Constant,  # BiasConstant
)
"""Initializer classes (and their subclasses) whose moments are known here."""


def _as_initializer(initializer):
    """An initializer instance; names and config dicts go through `keras.initializers.get`."""
    if isinstance(initializer, (str, dict)):
        return keras.initializers.get(initializer)
    return initializer


def _unsupported(initializer) -> TypeError:
    names = ", ".join(cls.__name__ for cls in SUPPORTED_INITIALIZERS)
    return TypeError(
        f"No variance is known for initializer class {type(initializer).__name__!r} "
        f"(received: {initializer!r}). Supported classes and their subclasses: {names}."
    )


def _variance_scaling_fan(initializer: keras.initializers.VarianceScaling, shape: tuple[int, ...]) -> float:
    """The ``fan`` that `VarianceScaling` divides ``scale`` by, exactly as Keras computes it."""
    input_axes = getattr(initializer, "input_axes", None)
    output_axes = getattr(initializer, "output_axes", None)
    if input_axes is not None and output_axes is not None:
        fan_in = math.prod(shape[axis] for axis in input_axes)
        fan_out = math.prod(shape[axis] for axis in output_axes)
    elif len(shape) >= 2 or isinstance(initializer, (ScaledGaussian, InverseSqrtUniform)):
        fan_in, fan_out = compute_fans(shape)  # keras_initlab's own classes reject rank < 2
    else:
        fan_in = fan_out = shape[0] if shape else 1  # Keras' rule for biases and scalars
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[initializer.mode]
    return max(1.0, float(fan))


def _moments(initializer, shape: Sequence[int]) -> tuple[float, float]:
    """``(mean, variance)`` of one entry of ``initializer(shape)``; the one place of this math."""
    initializer = _as_initializer(initializer)
    shape = tuple(int(d) for d in shape)
    if initializer is None:  # no bias at all
        return 0.0, 0.0
    if isinstance(initializer, _inits.VarianceScaling):
        base = initializer.scale / _variance_scaling_fan(initializer, shape)
        if initializer.distribution == "truncated_normal":
            # Drawn with stddev sqrt(base) / 0.8796..., then truncated at 2 of those stddevs.
            return 0.0, base * TRUNCATED_NORMAL_VARIANCE_FACTOR / _KERAS_TRUNCATION_STD**2
        if initializer.distribution in ("untruncated_normal", "uniform"):
            return 0.0, base  # uniform: limit**2 / 3 with limit = sqrt(3 * base)
        raise _unsupported(initializer)
    if isinstance(initializer, SparseGaussian):
        fan_in, _ = compute_fans(shape)
        k = initializer.connections
        stddev = initializer.stddev if initializer.stddev is not None else 1.0 / math.sqrt(k)
        return 0.0, k / fan_in * stddev**2
    if isinstance(initializer, _inits.RandomNormal):
        return float(initializer.mean), float(initializer.stddev) ** 2
    if isinstance(initializer, _inits.TruncatedNormal):
        return float(initializer.mean), float(initializer.stddev) ** 2 * TRUNCATED_NORMAL_VARIANCE_FACTOR
    if isinstance(initializer, _inits.RandomUniform):
        low, high = float(initializer.minval), float(initializer.maxval)
        return (low + high) / 2.0, (high - low) ** 2 / 12.0
    if isinstance(initializer, _inits.Orthogonal):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal needs a shape of rank >= 2. Received: shape={shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        # Orthonormal columns (rows >= cols) or rows: sum of squares gain**2 * min(rows, cols).
        return 0.0, float(initializer.gain) ** 2 / max(rows, cols)
    if isinstance(initializer, _inits.Zeros):
        return 0.0, 0.0
    if isinstance(initializer, _inits.Ones):
        return 1.0, 0.0
    if isinstance(initializer, _inits.Constant):
        return float(initializer.value), 0.0
    raise _unsupported(initializer)


def weight_variance(initializer, shape: Sequence[int]) -> float:
    """Variance of one entry of ``initializer(shape)``, over the initializer's randomness.

    | initializer                                    | ``Var(w)``                               |
    | ---------------------------------------------- | ---------------------------------------- |
    | `VarianceScaling` (all three distributions)    | ``scale / fan``  (``fan`` per ``mode``)  |
    | ... so `ScaledGaussian(gain)`                  | ``gain**2 / fan``                        |
    | ... `InverseSqrtUniform(gain)`                 | ``gain**2 / (3 * fan)``                  |
    | ... `GlorotUniform`, `HeNormal`, `LecunNormal` | ``1/fan_avg``, ``2/fan_in``, ``1/fan_in``|
    | `SparseGaussian(k, stddev)`                    | ``k / fan_in * stddev**2``               |
    | `RandomNormal(mean, stddev)`                   | ``stddev**2``                            |
    | `TruncatedNormal(mean, stddev)` (cut at 2 std) | ``stddev**2 * 0.77374...``               |
    | `RandomUniform(minval, maxval)`                | ``(maxval - minval)**2 / 12``            |
    | `Orthogonal(gain)` on ``(rows, cols)``         | ``gain**2 / max(rows, cols)``            |
    | `Zeros`, `Ones`, `Constant`, `BiasConstant`    | ``0``                                    |

    ``fan`` is computed as Keras does (`keras_initlab.compute_fans`; a rank-1
    bias shape ``(n,)`` has ``fan = n`` for Keras' own `VarianceScaling`).
    Keras' truncated-normal `VarianceScaling` widens its draw by 1/0.8796...
    so that the variance after truncation is ``scale / fan``; the value returned
    is that exact product. Subclasses count as their base class (the preset
    pattern); ``None`` (no bias) has variance 0. Names and config dicts are
    resolved with `keras.initializers.get`.

    Raises:
        TypeError: for an initializer class not listed in `SUPPORTED_INITIALIZERS`.
        ValueError: for a shape the initializer itself would reject.
    """
    return _moments(initializer, shape)[1]


def weight_mean(initializer, shape: Sequence[int]) -> float:
    """Mean of one entry of ``initializer(shape)``.

    0 for every zero-centred distribution; ``mean`` for `RandomNormal` and
    `TruncatedNormal` (the truncation is symmetric), ``(minval + maxval) / 2``
    for `RandomUniform`, the value for `Constant`/`BiasConstant`, 1 for `Ones`.
    Same supported classes and errors as `weight_variance`.
    """
    return _moments(initializer, shape)[0]


def predicted_preactivation_std(
    kernel_initializer,
    bias_initializer,
    input_second_moment: float,
    shape: Sequence[int],
    *,
    input_sum_variance: float | None = None,
) -> float:
    """The theory's standard deviation of ``z = W x + b`` at initialization.

    ``shape`` is the kernel's: Dense ``(fan_in, units)`` or conv
    ``(*receptive_field, in, out)`` with ``fan_in = prod(receptive_field) * in``
    (`keras_initlab.compute_fans`); the bias has shape ``(shape[-1],)``. Returns

        sqrt( fan_in * Var(w) * E[x**2]  +  mean(w)**2 * Var(S)  +  Var(b) )

    with the per-entry moments of `weight_variance` / `weight_mean`, where
    ``E[x**2] = input_second_moment`` is the raw second moment of one input
    entry and ``Var(S) = input_sum_variance`` the variance of the sum ``S`` of
    the ``fan_in`` inputs one unit sees. This is the spread of ``z`` pooled over
    units and examples, about its mean ``E[z] = mean(w) * E[S] + mean(b)``: a
    bias mean shifts ``z`` but adds nothing to the std, and a kernel mean adds
    ``mean(w)**2 * Var(S)`` (every unit sees the same shift ``mean(w) * S`` of
    its example), which ``E[x**2]`` alone cannot give.

    So a kernel with a nonzero mean (`RandomNormal(mean=...)`, an off-centre
    `RandomUniform`, and constant kernels: `Constant(c)`/`Ones` have
    ``Var(w) = 0`` and give ``Var(z) = c**2 * Var(S) + Var(b)``, all units
    identical) needs ``input_sum_variance``; it is ignored for zero-mean kernels.
    A `Zeros` kernel gives ``Var(z) = Var(b)``.

    Examples (Nielsen, ch. 3: 500 of 1000 inputs on, so ``E[x**2] = 0.5``):

    >>> normal = keras.initializers.RandomNormal
    >>> predicted_preactivation_std(ScaledGaussian(1.0), normal(stddev=1.0), 0.5, (1000, 30))
    1.224744871391589
    >>> predicted_preactivation_std(normal(stddev=1.0), normal(stddev=1.0), 0.5, (1000, 30))**2
    501.0

    Args:
        kernel_initializer: an initializer of a supported class (see `weight_variance`).
        bias_initializer: the same, or ``None`` for a layer without bias.
        input_second_moment: ``E[x**2]`` of the layer's inputs (finite, >= 0).
        shape: the kernel shape (rank >= 2).
        input_sum_variance: ``Var(S)`` (finite, >= 0), needed only for kernels with a nonzero mean.

    Raises:
        TypeError: for an unsupported initializer class (the message lists the supported ones).
        ValueError: for a bad shape or moment, or a nonzero kernel mean without ``input_sum_variance``.

    Reference:
        Nielsen, *Neural Networks and Deep Learning*, ch. 3 (2015); Glorot & Bengio (2010); He et al. (2015).
    """
    shape = tuple(shape)
    fan_in, _ = compute_fans(shape)
    second_moment = check_number(input_second_moment, "input_second_moment", minimum=0)
    kernel_mean, kernel_var = _moments(kernel_initializer, shape)
    _, bias_var = _moments(bias_initializer, (shape[-1],))
    variance = fan_in * kernel_var * second_moment + bias_var
    if kernel_mean != 0.0:
        if input_sum_variance is None:
            raise ValueError(
                f"The kernel initializer {kernel_initializer!r} has mean {kernel_mean}, so Var(z) includes "
                "mean(w)**2 * Var(S), S = the sum of a unit's inputs; pass `input_sum_variance=Var(S)`."
            )
        variance += kernel_mean**2 * check_number(input_sum_variance, "input_sum_variance", minimum=0)
    return math.sqrt(variance)
