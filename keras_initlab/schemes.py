"""Schemes: named (kernel initializer, bias initializer) pairs, the unit people compare.

`get_scheme` gives one fresh pair; `Scheme` is what a model factory receives: its
``kernel()`` and ``bias()`` return a new, differently seeded initializer on every
call, all seeds derived from one run seed.

>>> kernel, bias = get_scheme("nielsen-default", seed=0)
>>> layer = keras.layers.Dense(30, kernel_initializer=kernel, bias_initializer=bias)
>>> scheme = Scheme("he", seed=0)
>>> first, second = scheme.kernel(), scheme.kernel()   # two layers, two different draws
>>> sorted(list_schemes())[:3]
['glorot', 'he', 'lecun']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, TypeAlias

import keras
import numpy as np

from keras_initlab.checks import check_optional_int
from keras_initlab.initializers import BiasConstant, InverseSqrtUniform, ScaledGaussian, SparseGaussian

Initializer: TypeAlias = keras.initializers.Initializer


class SchemeInitializers(NamedTuple):
    """A fresh (kernel, bias) initializer pair; unpacks as ``kernel, bias = ...``."""

    kernel: Initializer
    bias: Initializer


def _normal(stddev: float) -> Callable[[int | None], Initializer]:
    return lambda seed: keras.initializers.RandomNormal(mean=0.0, stddev=stddev, seed=seed)


def _zeros(seed: int | None) -> Initializer:
    return keras.initializers.Zeros()


# name -> (one-line description, kernel factory, bias factory); factories take a seed.
_SCHEMES: dict[str, tuple[str, Callable, Callable]] = {
    "nielsen-large": (
        "w ~ N(0, 1), b ~ N(0, 1): the 'old' initialization; sigmoid units saturate",
        _normal(1.0),
        _normal(1.0),
    ),
    "nielsen-default": (
        "w ~ N(0, 1/n_in), b ~ N(0, 1): the 1/sqrt(n_in) rule",
        lambda seed: ScaledGaussian(1.0, seed=seed),
        _normal(1.0),
    ),
    "uniform-inv-sqrt": (
        "w ~ U(-1/sqrt(n_in), 1/sqrt(n_in)), b = 0: Var(z) = Var(x)/3",
        lambda seed: InverseSqrtUniform(1.0, seed=seed),
        _zeros,
    ),
    "he": (
        "w ~ N(0, 2/n_in), b = 0.01: the ReLU rule",
        lambda seed: ScaledGaussian(math.sqrt(2.0), seed=seed),
        lambda seed: BiasConstant(0.01),
    ),
    "glorot": (
        "Keras GlorotNormal: Var(w) = 2/(n_in + n_out), b = 0: Glorot & Bengio's rule (tanh)",
        lambda seed: keras.initializers.GlorotNormal(seed=seed),
        _zeros,
    ),
    "lecun": (
        "Keras LecunNormal: Var(w) = 1/n_in, b = 0: LeCun's rule (SELU, tanh)",
        lambda seed: keras.initializers.LecunNormal(seed=seed),
        _zeros,
    ),
    "orthogonal": (
        "Keras Orthogonal: orthonormal rows or columns (gain 1), b = 0 (Saxe et al. 2014)",
        lambda seed: keras.initializers.Orthogonal(seed=seed),
        _zeros,
    ),
    "lsuv": (
        "orthogonal, then LSUV: each layer's kernel rescaled to unit pre-activation std on a "
        "batch of training data (Mishkin & Matas 2016; keras_initlab.lsuv)",
        lambda seed: keras.initializers.Orthogonal(seed=seed),
        _zeros,
    ),
    "sparse10": (
        "10 nonzero incoming weights per unit ~ N(0, 1/10), b = 0",
        lambda seed: SparseGaussian(10, seed=seed),
        _zeros,
    ),
    "small": (
        "w ~ N(0, 0.01**2), b = 0: signals shrink layer by layer",
        _normal(0.01),
        _zeros,
    ),
    "zeros": (
        "w = 0, b = 0: every hidden unit stays identical (symmetry is never broken)",
        _zeros,
        _zeros,
    ),
}


LSUV = "lsuv"
"""The one data-dependent built-in scheme: its initializers are the ``orthogonal`` ones, and a
comparison then runs `keras_initlab.lsuv` on the model with a batch of training data."""


def list_schemes() -> dict[str, str]:
    """Returns ``{name: one-line description}`` for every built-in scheme."""
    return {name: description for name, (description, _, _) in _SCHEMES.items()}


def get_scheme(name: str, seed: int | None = None) -> SchemeInitializers:
    """Returns fresh ``(kernel, bias)`` initializers of the scheme ``name``.

    With an int ``seed`` the kernel initializer is seeded with ``seed`` and the
    bias initializer with ``seed + 1``, so one seed reproduces both and the two
    draws are different streams. With ``None`` each draws its own seed once
    (Keras semantics). Call once per layer: instances are never shared.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    if name not in _SCHEMES:
        raise ValueError(f"Unknown scheme {name!r}; known: {', '.join(_SCHEMES)}")
    seed = check_optional_int(seed, "seed")
    _, kernel, bias = _SCHEMES[name]
    return SchemeInitializers(kernel(seed), bias(None if seed is None else seed + 1))


SchemeLike = str | tuple[Initializer, Initializer]
"""A built-in scheme name, or a (kernel, bias) pair of initializer instances."""


class Scheme:
    """A scheme handed out layer by layer: every call gives a new initializer with its own seed.

    With Keras 3 seeding, one initializer instance with an int seed draws the
    same values on every call, so two same-shaped layers sharing it would start
    identical. Here the ``j``-th call of `kernel` is seeded with ``s_j`` and
    the ``j``-th call of `bias` with ``s_j + 1``, where ``s_0, s_1, ...`` is
    one stream of even seeds derived from ``seed`` (NumPy's ``SeedSequence``).
    So the same (scheme, seed) gives the same weights every time a model is
    built in the same order, different seeds give different weights, and
    ``build_mlp`` (which asks for one kernel and one bias per layer) draws
    exactly what it drew before this class existed.

    Example, in a model factory:

    >>> def build(scheme, input_shape, num_classes):
    ...     inputs = keras.Input(input_shape)
    ...     h = keras.layers.Flatten()(inputs)
    ...     h = keras.layers.Dense(100, "relu", kernel_initializer=scheme.kernel(),
    ...                            bias_initializer=scheme.bias())(h)
    ...     outputs = keras.layers.Dense(num_classes, "softmax", kernel_initializer=scheme.kernel(),
    ...                                  bias_initializer=scheme.bias())(h)
    ...     return keras.Model(inputs, outputs)
    >>> model = build(Scheme("he", seed=0), (28, 28, 1), 10)

    Args:
        scheme: a built-in name (`list_schemes`) or a (kernel, bias) pair of initializer
            instances, cloned from their configs with the seed replaced (the caller's
            instances are never handed out).
        seed: int >= 0, or ``None`` for seeds drawn once, when the scheme is made.
    """

    def __init__(self, scheme: SchemeLike, seed: int | None = None):
        if isinstance(scheme, str):
            if scheme not in _SCHEMES:
                raise ValueError(f"Unknown scheme {scheme!r}; known: {', '.join(_SCHEMES)}")
        elif not (
            isinstance(scheme, (tuple, list))
            and len(scheme) == 2
            and all(isinstance(init, keras.initializers.Initializer) for init in scheme)
        ):
            raise TypeError(
                "Argument `scheme` must be a scheme name or a (kernel, bias) pair of "
                f"keras.initializers.Initializer. Received: scheme={scheme!r}"
            )
        self.scheme = scheme if isinstance(scheme, str) else tuple(scheme)
        self.seed = check_optional_int(seed, "seed")
        self._sequence = np.random.SeedSequence(self.seed)
        self._seeds: list[int] = []
        self._calls = {"kernel": 0, "bias": 0}

    @property
    def name(self) -> str:
        """The scheme's name, or its initializer class names joined by ``_`` (``RandomNormal_Zeros``).

        Model names built from it are valid TensorFlow name scopes."""
        if isinstance(self.scheme, str):
            return self.scheme
        return "_".join(type(init).__name__ for init in self.scheme)

    def __repr__(self) -> str:
        return f"Scheme({self.name!r}, seed={self.seed})"

    def kernel(self) -> Initializer:
        """A new kernel initializer, seeded with the next seed of the kernel stream."""
        return self._next("kernel")

    def bias(self) -> Initializer:
        """A new bias initializer, seeded with the next seed of the bias stream."""
        return self._next("bias")

    def _next(self, part: str) -> Initializer:
        index = self._calls[part]
        self._calls[part] += 1
        while len(self._seeds) <= index:  # the stream's prefix does not depend on its length
            self._seeds = [int(s) & ~1 for s in self._sequence.generate_state(max(8, 2 * len(self._seeds)))]
        layer_seed = self._seeds[index]  # the kernel's seed; the bias gets layer_seed + 1, as in get_scheme
        if isinstance(self.scheme, str):
            return getattr(get_scheme(self.scheme, seed=layer_seed), part)
        init = self.scheme[part == "bias"]
        config = init.get_config()
        if "seed" in config:
            config["seed"] = layer_seed + (part == "bias")
        return type(init).from_config(config)
