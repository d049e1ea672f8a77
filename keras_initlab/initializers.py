"""Weight initializers from the classic initialization texts, as Keras initializers.

Every class here is a `keras.initializers.Initializer`, registered under the
package name ``keras_initlab`` so that models saved as ``.keras`` files reload
after a plain ``import keras_initlab``.

Seeding follows Keras 3 exactly: an initializer seeded with an int, or with
``None`` (a random int is drawn once, at construction), returns the same values
on every call of one instance. Re-using one such instance for several layers
therefore gives every layer of the same shape identical weights; give each
layer its own instance (``keras_initlab.get_scheme`` does) or pass a
``keras.random.SeedGenerator``, which gives fresh values on every call.

Fans are computed as Keras computes them (see `compute_fans`).
"""

from __future__ import annotations

import math
import random

import keras
from keras import ops

from keras_initlab.checks import check_choice, check_int, check_number, fail, is_int

_PACKAGE = "keras_initlab"
_MODES = ("fan_in", "fan_out", "fan_avg")


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Returns ``(fan_in, fan_out)`` for a kernel shape, as Keras computes them.

    A Dense kernel ``(fan_in, units)`` gives ``(fan_in, units)``; a conv kernel
    ``(*receptive_field, in_channels, out_channels)`` gives
    ``fan_in = prod(receptive_field) * in_channels`` and
    ``fan_out = prod(receptive_field) * out_channels``.

    Example:

    >>> compute_fans((3, 3, 16, 32))
    (144, 288)

    Raises:
        ValueError: for shapes of rank < 2 (a fan is undefined for a bias)
            or with a dimension < 1.
        TypeError: for a dimension that is not an int.
    """
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(
            "Fan-based initializers need a kernel shape of rank >= 2 "
            f"(fan_in, fan_out) or (*receptive_field, in, out). Received: shape={shape}"
        )
    shape = tuple(check_int(d, f"shape[{i}]", minimum=1) for i, d in enumerate(shape))
    receptive_field = math.prod(shape[:-2])
    return receptive_field * shape[-2], receptive_field * shape[-1]


def _float_dtype(dtype) -> str:
    """Standardizes ``dtype`` (``None`` means `keras.backend.floatx()`), rejecting non-floats."""
    dtype = keras.backend.standardize_dtype(dtype or keras.backend.floatx())
    if not keras.backend.is_float_dtype(dtype):
        raise TypeError(
            "Initializers only produce floating-point tensors "
            f"(float16, bfloat16, float32, float64). Received: dtype={dtype}"
        )
    return dtype


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ScaledGaussian(keras.initializers.VarianceScaling):
    """Untruncated Gaussian scaled by the fan: ``w ~ N(0, gain**2 / fan)``.

    ``Var(w) = gain**2 / fan`` with ``fan`` = fan_in, fan_out or their mean
    (``mode``). ``gain=1`` with ``mode="fan_in"`` is the 1/sqrt(n_in) rule
    (Nielsen's improved initialization, LeCun's normal without truncation);
    ``gain=sqrt(2)`` is the ReLU rule of He et al.

    Examples:

    >>> init = ScaledGaussian(gain=1.0, seed=0)
    >>> w = init(shape=(784, 30))            # std close to 1/sqrt(784)
    >>> layer = keras.layers.Dense(30, kernel_initializer=ScaledGaussian(2**0.5))

    Args:
        gain: positive finite multiplier of the standard deviation.
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
        seed: int, ``None`` or `keras.random.SeedGenerator` (see module docs).

    Reference:
        Nielsen, *Neural Networks and Deep Learning*, ch. 3 (2015);
        He et al., *Delving Deep into Rectifiers* (2015).
    """

    def __init__(self, gain: float = 1.0, mode: str = "fan_in", seed=None):
        self.gain = check_number(gain, "gain", positive=True)
        super().__init__(
            scale=self.gain**2, mode=check_choice(mode, "mode", _MODES), distribution="untruncated_normal", seed=seed
        )

    def __call__(self, shape, dtype=None):
        compute_fans(shape)
        return super().__call__(shape, dtype=_float_dtype(dtype))

    def get_config(self) -> dict:
        return {"gain": self.gain, "mode": self.mode, "seed": super().get_config()["seed"]}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InverseSqrtUniform(keras.initializers.VarianceScaling):
    """Uniform in ``+-gain/sqrt(fan)``: ``w ~ U(-bound, bound)``, ``bound = gain / sqrt(fan)``.

    ``Var(w) = bound**2 / 3 = gain**2 / (3 * fan)``: with gain 1 and
    unit-variance inputs the pre-activation variance is 1/3. This is the
    classic default of many libraries (and of PyTorch's ``nn.Linear`` bias).

    Examples:

    >>> init = InverseSqrtUniform(seed=0)
    >>> w = init(shape=(100, 10))            # all |w| <= 0.1
    >>> layer = keras.layers.Dense(10, kernel_initializer=InverseSqrtUniform())

    Args:
        gain: positive finite multiplier of the bound.
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
        seed: int, ``None`` or `keras.random.SeedGenerator` (see module docs).

    Reference:
        LeCun, Bottou, Orr, Mueller, *Efficient BackProp* (1998).
    """

    def __init__(self, gain: float = 1.0, mode: str = "fan_in", seed=None):
        self.gain = check_number(gain, "gain", positive=True)
        # VarianceScaling's uniform bound is sqrt(3 * scale / fan).
        super().__init__(
            scale=self.gain**2 / 3.0, mode=check_choice(mode, "mode", _MODES), distribution="uniform", seed=seed
        )

    def __call__(self, shape, dtype=None):
        compute_fans(shape)
        return super().__call__(shape, dtype=_float_dtype(dtype))

    def get_config(self) -> dict:
        return {"gain": self.gain, "mode": self.mode, "seed": super().get_config()["seed"]}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SparseGaussian(keras.initializers.Initializer):
    """Sparse initialization: each unit gets exactly ``connections`` nonzero incoming weights.

    For every output unit (a column of a Dense kernel, an output channel of a
    conv kernel) ``connections`` of its ``fan_in`` incoming positions are chosen
    uniformly without replacement and drawn from ``N(0, stddev**2)``; all other
    weights are exactly zero. Hence ``Var(z) = connections * stddev**2 * E[x**2]``;
    the default ``stddev = 1/sqrt(connections)`` gives ``Var(z) = E[x**2]``.

    Sampling is vectorised: positions are the ``top_k`` of i.i.d. Gaussian keys.

    Examples:

    >>> init = SparseGaussian(connections=10, seed=0)
    >>> w = init(shape=(784, 30))            # 10 nonzeros in every column
    >>> layer = keras.layers.Dense(30, kernel_initializer=SparseGaussian())

    Args:
        connections: int >= 1, nonzero incoming weights per unit (<= fan_in).
        stddev: positive finite std of the nonzero weights, or ``None`` for
            ``1/sqrt(connections)``.
        seed: int, ``None`` or `keras.random.SeedGenerator` (see module docs).

    Reference:
        Martens, *Deep learning via Hessian-free optimization* (2010);
        Sutskever et al., *On the importance of initialization and momentum* (2013).
    """

    def __init__(self, connections: int = 10, stddev: float | None = None, seed=None):
        self.connections = check_int(connections, "connections", minimum=1)
        self.stddev = None if stddev is None else check_number(stddev, "stddev", positive=True)
        self._init_seed = seed
        if seed is None:
            seed = random.randint(1, 10**9)  # drawn once, as Keras does
        elif isinstance(seed, dict):
            seed = keras.saving.deserialize_keras_object(seed)
        elif is_int(seed):
            seed = int(seed)
        elif not isinstance(seed, keras.random.SeedGenerator):
            fail(TypeError, "seed", "an int, None or a keras.random.SeedGenerator", seed)
        self.seed = seed

    def __call__(self, shape, dtype=None):
        dtype = _float_dtype(dtype)
        fan_in, _ = compute_fans(shape)
        k = self.connections
        if k > fan_in:
            raise ValueError(
                f"SparseGaussian(connections={k}) needs fan_in >= {k}, but shape={tuple(shape)} has fan_in={fan_in}."
            )
        units = shape[-1]
        stddev = self.stddev if self.stddev is not None else 1.0 / math.sqrt(k)
        draw_dtype = "float64" if dtype == "float64" else "float32"
        # One draw per unit: fan_in keys to rank (the top k give uniformly chosen
        # positions without replacement) and k independent values.
        draws = keras.random.normal((units, fan_in + k), dtype=draw_dtype, seed=self.seed)
        _, rows = ops.top_k(draws[:, :fan_in], k, sorted=False)
        cols = ops.broadcast_to(ops.arange(units, dtype=rows.dtype)[:, None], (units, k))
        indices = ops.stack([ops.reshape(rows, (-1,)), ops.reshape(cols, (-1,))], axis=1)
        values = ops.reshape(draws[:, fan_in:], (-1,)) * stddev
        kernel = ops.scatter(indices, values, (fan_in, units))
        return ops.cast(ops.reshape(kernel, tuple(shape)), dtype)

    def get_config(self) -> dict:
        return {
            "connections": self.connections,
            "stddev": self.stddev,
            "seed": keras.saving.serialize_keras_object(self._init_seed),
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BiasConstant(keras.initializers.Constant):
    """Constant fill, default 0.01: ``b = value`` for every entry, any shape.

    A small positive bias keeps ReLU units active at the start of training.

    Examples:

    >>> keras.ops.convert_to_numpy(BiasConstant()(shape=(3,)))
    array([0.01, 0.01, 0.01], dtype=float32)
    >>> layer = keras.layers.Dense(30, bias_initializer=BiasConstant(0.01))

    Args:
        value: finite number to fill with.

    Reference:
        CS231n notes, *Setting up the data and the model*, "Initializing the biases".
    """

    def __init__(self, value: float = 0.01):
        super().__init__(value=check_number(value, "value"))

    def __call__(self, shape, dtype=None):
        return super().__call__(shape, dtype=_float_dtype(dtype))
