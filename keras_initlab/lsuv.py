"""Layer-sequential unit-variance initialization (LSUV; Mishkin & Matas, "All you need is a good init", 2016).

No Keras initializer can depend on data. `lsuv` takes a built model and a batch and,
for every Dense/Conv layer in topological order, divides the kernel by the standard
deviation of the layer's pre-activation output ``z = W x + b`` on the batch, until
``|std(z) - 1| < tol`` (at most ``max_iter`` passes per layer): Algorithm 1 of the paper.
Each layer is scaled after the layers before it, so it sees the signal they now give.

The paper starts from orthonormal kernels; `lsuv` keeps the kernels the model has
(any initialization can be rescaled: "He + LSUV" is a question one may ask), and the
built-in scheme ``lsuv`` (`keras_initlab.schemes`) is the paper's recipe: Keras
``Orthogonal`` kernels and zero biases, then `lsuv`.

>>> import keras_initlab as kil
>>> model = kil.build_mlp([784, 256, 256, 10], activation="tanh", output="softmax", scheme="orthogonal", seed=0)
>>> report = kil.lsuv(model, kil.load_dataset("mnist-10k").x_train[:512])
>>> [abs(step.std_after - 1) < 0.1 for step in report]  # every layer's std(z) within tol of 1
[True, True, True]
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import keras
import numpy as np

from keras_initlab.checks import check_int, check_number
from keras_initlab.diagnostics import diagnosed_layers, model_input, preactivations

__all__ = ["LSUVStep", "lsuv"]


@dataclasses.dataclass(frozen=True)
class LSUVStep:
    """What `lsuv` did to one layer.

    Args:
        layer: the layer's name.
        iterations: how many times its kernel was rescaled (0: already within ``tol``, or dead).
        std_before: std of its pre-activation on the batch before LSUV touched it
            (after the layers before it were rescaled).
        std_after: the same after: within ``tol`` of 1 unless the layer is dead or ``max_iter`` ran out.
        dead: the pre-activation was constant on the batch (std 0, e.g. a zero kernel or
            inputs that are all zero): nothing to divide by, so the kernel was left as it was.
    """

    layer: str
    iterations: int
    std_before: float
    std_after: float
    dead: bool = False


def _std(z) -> float:
    return float(np.std(np.asarray(z, dtype=np.float64)))


def lsuv(model: keras.Model, x, *, tol: float = 0.1, max_iter: int = 10) -> list[LSUVStep]:
    """Rescales every Dense/Conv kernel of ``model`` so that its layer's pre-activation std on ``x`` is 1.

    In place: the model's kernels change (biases do not). For each layer, in
    topological order: ``W <- W / std(z)`` while ``|std(z) - 1| >= tol``, at most
    ``max_iter`` times, ``z`` the layer's output before its activation on the batch
    (computed as the layer computes it: padding, strides, dtype). With a zero bias one
    pass is exact; a bias makes ``std(z)`` move less than the kernel's scale, so a few
    passes may be needed. Works on float32 and float16 kernels (the statistics are taken
    in float64 and the kernel cast back).

    A layer whose pre-activation is constant on the batch (std 0: a zero kernel, dead
    inputs) cannot be rescaled: it is left as it is, reported with ``dead=True``, and a
    ``RuntimeWarning`` names it; no NaN is ever written.

    Args:
        model: a built functional or Sequential Keras model with one input and at least one
            Dense or Conv1D/2D/3D layer.
        x: a batch of inputs (at least 2 examples; images are reshaped to the model's input).
        tol: > 0, the tolerance on ``|std - 1|``.
        max_iter: >= 1, rescaling passes per layer at most.

    Returns:
        One `LSUVStep` per layer, in order.

    Raises:
        ValueError: an empty or 1-example batch, a batch whose shape does not fit the model,
            a model without Dense/Conv layers, ``tol <= 0``, ``max_iter < 1``.
        TypeError: ``tol`` or ``max_iter`` of the wrong type.
    """
    tol = check_number(tol, "tol", positive=True)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    x = np.asarray(x)
    if x.ndim == 0 or len(x) < 2:
        raise ValueError(
            f"lsuv needs a batch of at least 2 examples to measure a standard deviation; got shape {x.shape}."
        )
    if isinstance(model, keras.Sequential) and not model.built:
        model.build((None, *x.shape[1:]))
    layers = diagnosed_layers(model)
    inputs = model_input(model, x)
    steps, earlier, received = [], None, inputs
    for layer in layers:
        received = _layer_input(model, layer, inputs, earlier, received)
        earlier = layer
        std = before = _std(preactivations(layer, received))
        iterations = 0
        while std > 0 and math.isfinite(std) and abs(std - 1) >= tol and iterations < max_iter:
            kernel = np.asarray(layer.kernel, dtype=np.float64) / std
            layer.kernel.assign(kernel.astype(layer.kernel.dtype))
            std = _std(preactivations(layer, received))
            iterations += 1
        dead = std == 0
        if dead:
            warnings.warn(
                f"lsuv: the pre-activation of layer {layer.name!r} is constant on the batch (std 0); "
                "its kernel is left as it was.",
                RuntimeWarning,
                stacklevel=2,
            )
        steps.append(LSUVStep(layer.name, iterations, before, std, dead))
    return steps


def _layer_input(model: keras.Model, layer, inputs, earlier, earlier_input) -> np.ndarray:
    """``layer``'s input on the batch as the model computes it now: from ``earlier``'s input ``earlier_input`` when
    every path to ``layer`` passes there (a chain of layers: each part of the model runs once, not once per later
    layer), else from the model's ``inputs``."""
    if earlier is not None:
        try:
            part = keras.Model(earlier.input, layer.input)
        except ValueError:  # a path around ``earlier`` (a skip connection)
            pass
        else:
            return np.asarray(part(earlier_input, training=False))
    return np.asarray(keras.Model(model.inputs[0], layer.input)(inputs, training=False))
