"""Schemes: named (kernel initializer, bias initializer) pairs, the unit people compare.

>>> kernel, bias = get_scheme("nielsen-default", seed=0)
>>> layer = keras.layers.Dense(30, kernel_initializer=kernel, bias_initializer=bias)
>>> sorted(list_schemes())[:3]
['he', 'nielsen-default', 'nielsen-large']
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import keras

from keras_initlab.checks import check_optional_int
from keras_initlab.initializers import BiasConstant, InverseSqrtUniform, ScaledGaussian, SparseGaussian

Initializer = keras.initializers.Initializer


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
