"""Model factory: MLPs and small conv nets initialized by a scheme, and their losses.

Nielsen's reference network is ``build_mlp([784, 30, 10])``: sigmoid hidden and
output units, trained on the cross-entropy summed over the 10 sigmoid outputs
(`summed_sigmoid_crossentropy`) with L2 weight decay on kernels only.

>>> model = build_mlp([784, 30, 10], scheme="nielsen-default", l2_lambda=5.0, n_train=8000, seed=0)
>>> loss = default_loss(model)          # summed sigmoid cross-entropy
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_initlab.checks import check_choice, check_int, check_ints, check_number, check_optional_int
from keras_initlab.schemes import SchemeInitializers, get_scheme

OUTPUTS = ("sigmoid", "softmax")

SchemeLike = str | tuple[keras.initializers.Initializer, keras.initializers.Initializer]


def summed_sigmoid_crossentropy(y_true, y_pred):
    """Nielsen's cost for sigmoid outputs, per example: ``-sum_j [y_j ln a_j + (1 - y_j) ln(1 - a_j)]``.

    ``y_true`` holds integer labels (one-hot encoded here); ``y_pred`` the
    sigmoid activations. Keras averages the per-example values over the batch.
    Its gradient with respect to the output pre-activation is ``a - y``.
    """
    labels = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), ops.shape(y_pred)[-1], dtype=y_pred.dtype)
    return ops.sum(keras.losses.binary_crossentropy(labels[..., None], y_pred[..., None]), axis=-1)


def activation_name(fn) -> str:
    """The name of an activation function (``"linear"`` for None), e.g. ``"sigmoid"``."""
    if fn is None:
        return "linear"
    return getattr(fn, "__name__", type(fn).__name__)


def default_loss(model: keras.Model):
    """The loss that goes with the model's output units.

    Sigmoid outputs: `summed_sigmoid_crossentropy`; softmax outputs: sparse
    categorical cross-entropy. Both take integer labels.
    """
    activation = getattr(model.layers[-1], "activation", None)
    name = getattr(activation, "__name__", None)
    if name == "sigmoid":
        return summed_sigmoid_crossentropy
    if name == "softmax":
        return keras.losses.sparse_categorical_crossentropy
    raise ValueError(
        f"Cannot infer the loss of a model whose last layer's activation is {name!r}; "
        f"allowed: {OUTPUTS}. Pass `loss=` explicitly."
    )


def l2_regularizer(l2_lambda: float, n_train: int | None) -> keras.regularizers.L2 | None:
    """Keras L2 regularizer equal to Nielsen's weight decay ``(lambda / 2n) * sum(w**2)``.

    Its gradient ``(lambda / n) * w`` makes one SGD step
    ``w <- (1 - eta * lambda / n) * w - eta * mean_grad``. Returns ``None`` for ``l2_lambda == 0``.
    """
    l2_lambda = check_number(l2_lambda, "l2_lambda", minimum=0)
    if l2_lambda == 0:
        return None
    if n_train is None:
        raise ValueError(f"`l2_lambda={l2_lambda}` needs the training-set size: pass `n_train`, an int >= 1.")
    n_train = check_int(n_train, "n_train", minimum=1)
    return keras.regularizers.L2(l2_lambda / (2 * n_train))


def layer_seeds(seed: int | None, n_layers: int) -> list[int]:
    """One independent int seed per layer, all derived from ``seed`` (random when ``None``)."""
    seed = check_optional_int(seed, "seed")
    # Even seeds only: get_scheme seeds the bias with seed + 1.
    return [int(s) & ~1 for s in np.random.SeedSequence(seed).generate_state(n_layers)]


def layer_initializers(scheme: SchemeLike, seed: int) -> SchemeInitializers:
    """Fresh (kernel, bias) initializers of ``scheme`` for one layer, seeded with ``seed``.

    ``scheme`` is a built-in name or a ``(kernel, bias)`` pair of initializer
    instances; a pair is cloned from its config with the seed replaced, so the
    caller's instances are never shared between layers.
    """
    if isinstance(scheme, str):
        return get_scheme(scheme, seed=seed)
    if (
        isinstance(scheme, (tuple, list))
        and len(scheme) == 2
        and all(isinstance(i, keras.initializers.Initializer) for i in scheme)
    ):
        clones = []
        for init, init_seed in zip(scheme, (seed, seed + 1)):
            config = init.get_config()
            if "seed" in config:
                config["seed"] = init_seed
            clones.append(type(init).from_config(config))
        return SchemeInitializers(*clones)
    raise TypeError(
        "Argument `scheme` must be a scheme name or a (kernel, bias) pair of "
        f"keras.initializers.Initializer. Received: scheme={scheme!r}"
    )


def scheme_name(scheme: SchemeLike) -> str:
    """A short name for ``scheme``: the name itself, or the initializer class names joined by ``_``.

    It becomes part of the model's name, which TensorFlow uses as a name scope
    (letters, digits and ``_ . - / >`` only): ``mlp_RandomNormal_Zeros``.
    """
    if isinstance(scheme, str):
        return scheme
    return "_".join(type(init).__name__ for init in scheme)


def as_model_input(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Reshapes images ``(n, H, W, C)`` to the model's input shape (e.g. ``(n, 784)`` for an MLP)."""
    shape = tuple(model.input_shape[1:])
    if math.prod(shape) != math.prod(x.shape[1:]):
        raise ValueError(
            f"Data of shape {x.shape[1:]} cannot feed model {model.name!r} with input shape {shape}."
        )
    return x.reshape((len(x), *shape)).astype(np.float32, copy=False)


def build_mlp(
    sizes: Sequence[int] = (784, 30, 10),
    activation: str = "sigmoid",
    output: str = "sigmoid",
    scheme: SchemeLike = "nielsen-default",
    l2_lambda: float = 0.0,
    n_train: int | None = None,
    seed: int | None = None,
) -> keras.Model:
    """A fully connected network ``sizes[0] -> ... -> sizes[-1]`` initialized by ``scheme``.

    Every Dense layer gets fresh initializers of ``scheme`` seeded from ``seed``
    (`layer_seeds`): one seed reproduces the whole model, and layers get
    different values. Kernels carry `l2_regularizer(l2_lambda, n_train)`.

    Example:

    >>> model = build_mlp([784, 30, 10], scheme="he", activation="relu", output="softmax", seed=1)

    Args:
        sizes: layer widths, input first; at least two positive ints.
        activation: any Keras activation name for the hidden layers.
        output: ``"sigmoid"`` (Nielsen) or ``"softmax"``.
        scheme: a scheme name (`keras_initlab.list_schemes`) or a (kernel, bias) pair.
        l2_lambda: Nielsen's lambda (>= 0); needs ``n_train`` when positive.
        n_train: training-set size n in ``lambda / (2n)``.
        seed: int or ``None`` (random).
    """
    sizes = check_ints(sizes, "sizes", minimum=1, min_len=2)
    check_choice(output, "output", OUTPUTS)
    keras.activations.get(activation)  # unknown names fail here, with Keras' message
    regularizer = l2_regularizer(l2_lambda, n_train)
    seeds = layer_seeds(seed, len(sizes) - 1)
    inputs = keras.Input((sizes[0],), name="pixels")
    h = inputs
    for i, (units, layer_seed) in enumerate(zip(sizes[1:], seeds), start=1):
        kernel, bias = layer_initializers(scheme, layer_seed)
        h = keras.layers.Dense(
            units,
            activation=output if i == len(sizes) - 1 else activation,
            kernel_initializer=kernel,
            bias_initializer=bias,
            kernel_regularizer=regularizer,
            name=f"dense_{i}",
        )(h)
    return keras.Model(inputs, h, name=f"mlp_{scheme_name(scheme)}")


def build_convnet(
    input_shape: Sequence[int] = (28, 28, 1),
    filters: Sequence[int] = (8, 16),
    num_classes: int = 10,
    activation: str = "relu",
    output: str = "softmax",
    scheme: SchemeLike = "he",
    l2_lambda: float = 0.0,
    n_train: int | None = None,
    seed: int | None = None,
) -> keras.Model:
    """A small conv net: two 3x3 conv layers (each followed by 2x2 max-pooling), then one Dense output layer.

    Conv kernels have shape ``(3, 3, in, out)``, so their fan_in is ``9 * in``;
    initializers, seeding and L2 work exactly as in `build_mlp`.

    Example:

    >>> model = build_convnet(scheme="he", seed=0)   # 28x28x1 -> 10 classes
    """
    filters = check_ints(filters, "filters", minimum=1, min_len=2, max_len=2)
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    check_choice(output, "output", OUTPUTS)
    keras.activations.get(activation)
    regularizer = l2_regularizer(l2_lambda, n_train)
    seeds = layer_seeds(seed, 3)
    inputs = keras.Input(tuple(input_shape), name="pixels")
    h = inputs
    for i, (n_filters, layer_seed) in enumerate(zip(filters, seeds), start=1):
        kernel, bias = layer_initializers(scheme, layer_seed)
        h = keras.layers.Conv2D(
            n_filters, 3, activation=activation, kernel_initializer=kernel, bias_initializer=bias,
            kernel_regularizer=regularizer, name=f"conv_{i}",
        )(h)
        h = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(h)
    kernel, bias = layer_initializers(scheme, seeds[2])
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(
        num_classes, activation=output, kernel_initializer=kernel, bias_initializer=bias,
        kernel_regularizer=regularizer, name="dense_out",
    )(h)
    return keras.Model(inputs, h, name=f"convnet_{scheme_name(scheme)}")
