"""Which models `keras_initlab.training.train_stacked` trains side by side: MLPs of one architecture.

Stacked models must agree on what the compiled step computes: the input size, the chain of biased Dense layers
(units and activation of each), one L2 coefficient for every kernel, and the loss. `architecture` checks a list of
models and returns what they share; its errors name the first model and the first thing that differs.

>>> from keras_initlab import build_mlp
>>> architecture([build_mlp([784, 30, 10], seed=0), build_mlp([784, 30, 10], seed=1)]).sizes
[784, 30, 10]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras

from keras_initlab.checks import check_list, fail
from keras_initlab.models import activation_name, default_loss


class Architecture:
    """What must agree between stacked models: input size, Dense layers (units, activation), L2."""

    def __init__(self, model: keras.Model):
        self.model = model
        self.layers = dense_layers(model)
        self.input_size = math.prod(model.input_shape[1:])
        self.units = [layer.units for layer in self.layers]
        self.activations = [activation_name(layer.activation) for layer in self.layers]
        self.l2 = l2_coefficient(self.layers[0])
        self.loss = default_loss(model)

    @property
    def sizes(self) -> list[int]:
        return [self.input_size, *self.units]

    def differences(self, other: Architecture) -> list[str]:
        """What differs, in words (empty when the two stack)."""
        if self.sizes != other.sizes:
            return [f"sizes {other.sizes} != {self.sizes}"]
        found = []
        for i, (a, b) in enumerate(zip(self.activations, other.activations, strict=True), start=1):
            if a != b:
                found.append(f"activation of Dense layer {i} {b!r} != {a!r}")
        for i, layer in enumerate(other.layers, start=1):
            if l2_coefficient(layer) != self.l2:
                found.append(f"L2 coefficient of Dense layer {i} {l2_coefficient(layer)!r} != {self.l2!r}")
        return found


def dense_layers(model: keras.Model) -> list[keras.layers.Dense]:
    """The model's Dense layers, checked to be what `build_mlp` makes: a plain chain of biased Dense layers."""
    if len(model.input_shape) != 2:
        raise ValueError(
            f"train_stacked trains MLPs built by keras_initlab.models.build_mlp, whose input is a flat vector; "
            f"model {model.name!r} has input shape {model.input_shape}."
        )
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    for layer in layers:
        problem = None
        if not isinstance(layer, keras.layers.Dense):
            problem = f"is a {type(layer).__name__}; only Dense layers stack"
        elif not layer.use_bias:
            problem = "has no bias"
        elif layer.bias_regularizer is not None or layer.activity_regularizer is not None:
            problem = "has a bias or activity regularizer; only kernel L2 is supported"
        elif layer.kernel_constraint is not None or layer.bias_constraint is not None:
            problem = "has a weight constraint"
        elif layer.kernel.dtype != "float32" or layer.bias.dtype != "float32":
            problem = f"holds {layer.kernel.dtype} weights; only float32 is supported"
        elif layer.kernel_regularizer is not None and type(layer.kernel_regularizer) is not keras.regularizers.L2:
            problem = f"has a {type(layer.kernel_regularizer).__name__} kernel regularizer; only L2 is supported"
        if problem:
            raise ValueError(
                f"train_stacked trains MLPs built by keras_initlab.models.build_mlp; "
                f"layer {layer.name!r} of model {model.name!r} {problem}."
            )
    if not layers:
        raise ValueError(f"Model {model.name!r} has no Dense layers to train.")
    return layers


def l2_coefficient(layer: keras.layers.Dense) -> float:
    regularizer = layer.kernel_regularizer
    return 0.0 if regularizer is None else float(regularizer.l2)


def architecture(models: Sequence[keras.Model]) -> Architecture:
    """The common architecture of ``models``; a ValueError names the first thing that differs."""
    models = check_list(models, "models", min_len=1, what="Keras model(s)")
    for k, model in enumerate(models):
        if not isinstance(model, keras.Model):
            fail(TypeError, f"models[{k}]", "a Keras model", model)
    if len({id(m) for m in models}) != len(models):
        raise ValueError("Argument `models` holds the same model more than once; each slot trains its own weights.")
    first = Architecture(models[0])
    l2s = {l2_coefficient(layer) for layer in first.layers}
    if len(l2s) > 1:
        raise ValueError(
            f"The Dense layers of model {models[0].name!r} have different L2 coefficients {sorted(l2s)}; "
            "train_stacked needs one coefficient per model, as build_mlp makes."
        )
    for k, model in enumerate(models[1:], start=1):
        differences = first.differences(Architecture(model))
        if differences:
            raise ValueError(
                f"Stacked models must have the same architecture: model {k} ({model.name!r}) differs from "
                f"model 0 ({models[0].name!r}) in " + "; ".join(differences) + "."
            )
    return first
