"""Model factory: MLPs and small conv nets initialized by a scheme, and their losses.

Nielsen's reference network is ``build_mlp([784, 30, 10])``: sigmoid hidden and
output units, trained on the cross-entropy summed over the 10 sigmoid outputs
(`summed_sigmoid_crossentropy`) with L2 weight decay on kernels only.

A user's own model comes from a *factory*: a function called with the keyword
arguments ``scheme`` (a `keras_initlab.schemes.Scheme`), ``input_shape`` (one
image, e.g. ``(28, 28, 1)``) and ``num_classes``, returning an uncompiled
``keras.Model`` whose output is class probabilities. `load_factory` finds it
(``"file.py:function"`` or ``"package.module:function"``) and `build_from_factory`
calls it and checks what it returns.

>>> model = build_mlp([784, 30, 10], scheme="nielsen-default", l2_lambda=5.0, n_train=8000, seed=0)
>>> loss = default_loss(model)          # summed sigmoid cross-entropy
>>> build = load_factory("initlab/examples/models/small_cnn.py:build")  # from a checkout's root folder
>>> cnn = build_from_factory(build, Scheme("he", seed=0), input_shape=(28, 28, 1), num_classes=10)
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import keras
import numpy as np
from keras import ops

from keras_initlab.checks import check_choice, check_int, check_ints, check_number
from keras_initlab.schemes import Scheme, SchemeLike

OUTPUTS = ("sigmoid", "softmax")


@keras.saving.register_keras_serializable(package="keras_initlab")
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


def all_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every layer of ``model`` in order, the layers of nested models included (after the model itself)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def as_model_input(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Reshapes images ``(n, H, W, C)`` to the model's input shape (e.g. ``(n, 784)`` for an MLP)."""
    shape = tuple(model.input_shape[1:])
    if math.prod(shape) != math.prod(x.shape[1:]):
        raise ValueError(f"Data of shape {x.shape[1:]} cannot feed model {model.name!r} with input shape {shape}.")
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

    Every Dense layer gets fresh initializers of ``Scheme(scheme, seed)``
    (`keras_initlab.schemes.Scheme`): one seed reproduces the whole model, and
    layers get different values. Kernels carry `l2_regularizer(l2_lambda, n_train)`.

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
    drawn = Scheme(scheme, seed)
    inputs = keras.Input((sizes[0],), name="pixels")
    h = inputs
    for i, units in enumerate(sizes[1:], start=1):
        h = keras.layers.Dense(
            units,
            activation=output if i == len(sizes) - 1 else activation,
            kernel_initializer=drawn.kernel(),
            bias_initializer=drawn.bias(),
            kernel_regularizer=regularizer,
            name=f"dense_{i}",
        )(h)
    return keras.Model(inputs, h, name=f"mlp_{drawn.name}")


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
    drawn = Scheme(scheme, seed)
    inputs = keras.Input(tuple(input_shape), name="pixels")
    h = inputs
    for i, n_filters in enumerate(filters, start=1):
        h = keras.layers.Conv2D(
            n_filters,
            3,
            activation=activation,
            kernel_initializer=drawn.kernel(),
            bias_initializer=drawn.bias(),
            kernel_regularizer=regularizer,
            name=f"conv_{i}",
        )(h)
        h = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(
        num_classes,
        activation=output,
        kernel_initializer=drawn.kernel(),
        bias_initializer=drawn.bias(),
        kernel_regularizer=regularizer,
        name="dense_out",
    )(h)
    return keras.Model(inputs, h, name=f"convnet_{drawn.name}")


# -- a user's model factory ----------------------------------------------------------------

FACTORY_ARGUMENTS = ("scheme", "input_shape", "num_classes")
"""The keyword arguments a model factory is called with."""

_MODULE_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class FactoryError(ValueError):
    """A model factory cannot be loaded, fails, or returns something that is not the model asked for."""


def factory_name(factory: str | Callable) -> str:
    """How a factory is recorded: the reference as written, or ``module:qualified_name`` of a function."""
    if isinstance(factory, str):
        return factory
    return f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', type(factory).__name__)}"


def split_factory(reference: str) -> tuple[str, str]:
    """``"file.py:function"`` or ``"package.module:function"`` -> ``(file or module, function)``;
    a `FactoryError` for anything else."""
    where, _, name = reference.rpartition(":")
    if not where or not _MODULE_PATH.fullmatch(name) or not (where.endswith(".py") or _MODULE_PATH.fullmatch(where)):
        raise FactoryError(
            f"{reference!r} is not a factory reference; write 'file.py:function' (a path relative to the "
            "spec's folder) or 'package.module:function'"
        )
    return where, name


def load_factory(reference: str | Callable, base_dir: str | os.PathLike | None = None) -> Callable:
    """The model factory named by ``reference``, or ``reference`` itself when it is callable.

    ``"file.py:function"`` loads the file (relative to ``base_dir``, default the
    current folder) as a module of its own; ``"package.module:function"`` imports
    the module. A missing file, module or function, or a module that fails while
    loading, is a `FactoryError` saying which.
    """
    if callable(reference):
        return reference
    where, name = split_factory(reference)
    if where.endswith(".py"):
        path = (Path(base_dir or ".") / where).resolve()
        if not path.is_file():
            raise FactoryError(f"{reference!r}: no such file {path}")
        # One module per file, named after its path, so that two factory files never collide.
        module_name = f"keras_initlab_factory_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        assert module_spec is not None and module_spec.loader is not None  # a .py file always has a loader
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module  # what dataclasses and pickling in the file look up
        try:
            module_spec.loader.exec_module(module)
        except (Exception, SystemExit) as e:  # sys.exit() in the user's file is an error of the file, not an exit
            del sys.modules[module_name]
            raise FactoryError(f"{reference!r}: loading {path} raised {_described(e)}") from None
    else:
        try:
            module = importlib.import_module(where)
        except (Exception, SystemExit) as e:
            raise FactoryError(f"{reference!r}: importing {where} raised {_described(e)}") from None
    factory = module
    for part in name.split("."):
        if not hasattr(factory, part):
            defined = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_"))
            raise FactoryError(f"{reference!r}: {where} has no {name!r}; its functions: {', '.join(defined) or 'none'}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise FactoryError(f"{reference!r}: {name} is a {type(factory).__name__}, not a function")
    return factory


def _described(error: BaseException) -> str:
    """``ValueError: message (file.py, line 12)``: the error and where in the user's code it was raised."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({Path(frames[-1].filename).name}, line {frames[-1].lineno})" if frames else ""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message[:300]}{where}"


def build_from_factory(factory: Callable, scheme: Scheme, input_shape: Sequence[int], num_classes: int) -> keras.Model:
    """Calls ``factory(scheme=..., input_shape=..., num_classes=...)`` and checks the model it returns.

    The model must take one input of ``input_shape`` (any shape with as many
    values: images are reshaped) and give one output ``(batch, num_classes)``.
    A ``keras.Sequential`` without an ``Input`` is built for ``input_shape``.
    Raises a `FactoryError` naming the factory for a signature without the
    `FACTORY_ARGUMENTS`, an exception inside it (with its file and line; ``sys.exit()`` too), a
    return value that is not a ``keras.Model``, or shapes that do not fit.
    """
    name = factory_name(factory)
    input_shape = tuple(input_shape)
    try:
        inspect.signature(factory).bind(scheme=scheme, input_shape=input_shape, num_classes=num_classes)
    except TypeError:
        raise FactoryError(
            f"{name} must accept the keyword arguments {', '.join(FACTORY_ARGUMENTS)}; "
            f"its signature is {inspect.signature(factory)}"
        ) from None
    except ValueError:  # a builtin without a signature: calling it tells
        pass
    try:
        model = factory(scheme=scheme, input_shape=input_shape, num_classes=num_classes)
    except (Exception, SystemExit) as e:  # sys.exit() in the factory is its error, not the program's end
        raise FactoryError(f"{name} raised {_described(e)}") from None
    if not isinstance(model, keras.Model):
        raise FactoryError(f"{name} returned a {type(model).__name__}, not a keras.Model")
    if not model.built:
        model.build((None, *input_shape))
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise FactoryError(
            f"{name} returned a model with {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "a classifier here has one of each"
        )
    model_input = tuple(model.inputs[0].shape[1:])
    if None in model_input or math.prod(model_input) != math.prod(input_shape):
        raise FactoryError(
            f"{name} returned a model whose input shape {model_input} does not hold one image of shape "
            f"{input_shape}; use keras.Input(input_shape)"
        )
    output = tuple(model.outputs[0].shape[1:])
    if output != (num_classes,):
        raise FactoryError(
            f"{name} returned a model whose output shape is {output}, not ({num_classes},) "
            f"(one probability per class); end it with Dense(num_classes, activation='softmax')"
        )
    return model
