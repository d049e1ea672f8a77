"""A spec's Keras values, checked by building them as Keras would: initializer configs (`check_initializer`),
optimizer and loss names or configs (`keras_config`, `check_optimizer`: a learning rate positive and finite) and
factory references (`check_factory`). Numbers in a config must be finite (`check_finite`); Keras' reason for
refusing one is kept in one line (`keras_reason`). Errors are `initlab.spec_files.SpecError` naming the key path.

>>> check_optimizer({"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9}})["class_name"]
'SGD'
"""

from __future__ import annotations

import copy
import inspect
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import keras

from initlab.messages import shown, shown_text
from initlab.spec_files import SpecError
from keras_initlab.checks import check_number, check_str, fail
from keras_initlab.models import FactoryError, split_factory

_INITIALIZER = (
    "an initializer name (he_normal; keras_initlab>NAME: initlab list) or a Keras config {class_name, config}"
)


def check_initializer(config, path: str) -> None:
    """An initializer name or Keras config, checked by building it; a number in it must be finite.

    Keras' reason for not building it is kept, in one line and cut like a value; what is allowed follows it:
    the arguments of the config's class when Keras knows the class, else the forms of an initializer.
    """
    if not isinstance(config, (str, Mapping)):
        fail(TypeError, path, _INITIALIZER, config)
    check_finite(config, path)
    try:
        keras.initializers.get(plain(config))
    except (ValueError, TypeError) as e:
        name = config.get("class_name") if isinstance(config, Mapping) else None
        found = isinstance(name, str) and (
            keras.saving.get_registered_object(name) or getattr(keras.initializers, name, None)
        )
        allowed = (
            f"{name}'s config takes {', '.join(inspect.signature(found).parameters) or 'no arguments'}"
            if inspect.isclass(found)
            else f"allowed: {_INITIALIZER}"
        )
        raise SpecError(f"{path}: Keras cannot build this initializer: {keras_reason(e)}; {allowed}") from None


def check_finite(value, path: str) -> None:
    """A `SpecError` naming the first NaN or infinity anywhere in ``value`` (a config: mappings, lists, numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{path}: must be a finite number; got {shown(value)}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_finite(item, f"{path}.{shown_text(key)}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_finite(item, f"{path}[{i}]")


def keras_reason(error: Exception) -> str:
    """What Keras says is wrong, in one line cut like a value (it may quote one): the cause its deserialization
    wraps (``Exception encountered: ...``), else its whole message."""
    text = " ".join(str(error).split())
    _, wrapped, cause = text.rpartition("Exception encountered: ")
    return shown_text(cause if wrapped else text)


def plain(config):
    return json.loads(json.dumps(config))


def check_factory(value, base_dir: Path | None) -> str | Callable:
    """``model.factory``: a reference to a file (which must exist) or module, or (in Python) a function."""
    if callable(value):
        return value
    forms = "'file.py:function', 'package.module:function' or a function"
    check_str(value, "model.factory", forms)
    try:
        where, _ = split_factory(value)
    except FactoryError:
        fail(ValueError, "model.factory", forms, value)
    if where.endswith(".py"):
        path = (base_dir or Path.cwd()) / where
        try:
            found = path.is_file()
        except OSError as e:  # a name too long, no permission
            raise SpecError(f"model.factory: cannot read {shown_text(path)} ({e.strerror})") from None
        if not found:
            folder = (base_dir or Path.cwd()).resolve()
            raise SpecError(
                f"model.factory: no such file {shown_text(where)} in {shown_text(folder)} (a factory file's "
                "path is relative to the spec's folder)"
            )
    return value


def keras_config(value, path: str, get: Callable, what: str) -> tuple[str | dict | None, object]:
    """An optimizer or loss as a Keras name or ``{class_name, config}``, checked by building it with ``get``:
    ``(value as plain data, what was built)``, ``(None, None)`` for None."""
    if value is None:
        return None, None
    if not isinstance(value, (str, Mapping)):
        fail(TypeError, path, f"{what} name or a Keras config {{class_name, config}}", value)
    value = plain(value)
    try:
        built = get(copy.deepcopy(value))
    except (ValueError, TypeError) as e:
        raise SpecError(f"{path}: not {what} Keras knows: {keras_reason(e)}") from None
    if built is None:
        raise SpecError(f"{path}: not {what} Keras knows: {shown(value)}")
    return value, built


def check_optimizer(value) -> str | dict | None:
    """``optimizer``, a Keras name or config (`keras_config`) whose learning rate is positive and finite: a number
    in its config, or a schedule's rate at the first step (a negative rate would climb the loss)."""
    config = value.get("config") if isinstance(value, Mapping) else None
    rate = config.get("learning_rate") if isinstance(config, Mapping) else None
    if rate is not None and not isinstance(rate, Mapping):
        check_number(rate, "optimizer.config.learning_rate", positive=True)
    value, built = keras_config(value, "optimizer", keras.optimizers.get, "an optimizer")
    if isinstance(rate, Mapping):
        first = float(keras.ops.convert_to_numpy(built.learning_rate))
        if not (math.isfinite(first) and first > 0):
            raise SpecError(
                f"optimizer.config.learning_rate: the schedule's rate at the first step is {first:.6g}; "
                "it must be a positive finite number"
            )
    return value
