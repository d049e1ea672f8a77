"""Argument checks, one way for the whole package: a wrong type is a `TypeError`, a bad value a `ValueError`.

Messages use Keras' wording, ``Argument `epochs` must be an int >= 1. Received: epochs=2.0``,
with the received value shortened (`shown`) so that a huge value is never echoed back.
Each error also carries ``argument`` (the name), ``requirement`` (``"an int >= 1"``) and
``received`` (the value), so that the spec parser (`keras_initlab.spec`), which passes key paths
as names, can say the same thing in its own words.
Booleans are never numbers here (``True`` is not an int >= 1); NumPy integers and floats are.

>>> check_int(3, "epochs", minimum=1)
3
>>> check_number(0.5, "learning_rate", positive=True)
0.5
>>> check_int(2.0, "epochs", minimum=1)
Traceback (most recent call last):
...
TypeError: Argument `epochs` must be an int >= 1. Received: epochs=2.0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, NoReturn

MAX_SHOWN = 80
"""Characters of a received value's ``repr`` that an error message shows."""


def shown(value) -> str:
    """``repr(value)``, cut to `MAX_SHOWN` characters (with its full length) when longer."""
    text = repr(value)
    if len(text) <= MAX_SHOWN:
        return text
    return f"{text[:MAX_SHOWN]}... ({len(text)} characters)"


def fail(kind: type[Exception], name: str, requirement: str, value) -> NoReturn:
    """Raises ``kind`` (TypeError or ValueError) saying that ``name`` must be ``requirement``."""
    error: Any = kind(f"Argument `{name}` must be {requirement}. Received: {name}={shown(value)}")
    error.argument, error.requirement, error.received = name, requirement, value
    raise error


def is_int(value) -> bool:
    """True for Python and NumPy ints; never for a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    """Python and NumPy ints and floats, and 0-d arrays or tensors of them; never a bool."""
    if isinstance(value, numbers.Real):
        return not isinstance(value, bool)
    return (
        tuple(getattr(value, "shape", (None,))) == ()
        and hasattr(value, "__float__")
        and "bool" not in str(getattr(value, "dtype", ""))
    )


def _bounds(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" between {minimum} and {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    return f" <= {maximum}" if maximum is not None else ""


def _int(value, name: str, minimum, maximum, requirement: str) -> int:
    if not is_int(value):
        fail(TypeError, name, requirement, value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        fail(ValueError, name, requirement, value)
    return int(value)


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int; TypeError unless an int (not a bool), ValueError outside the bounds."""
    return _int(value, name, minimum, maximum, "an int" + _bounds(minimum, maximum))


def check_optional_int(value, name: str, *, minimum: int | None = None) -> int | None:
    """``None``, or `check_int` of ``value`` (the message says that None is allowed)."""
    return None if value is None else _int(value, name, minimum, None, f"an int{_bounds(minimum, None)} or None")


def check_number(value, name: str, *, positive: bool = False, minimum: float | None = None) -> float:
    """``value`` as a finite float; TypeError unless a real number, ValueError when not finite,
    not ``> 0`` (``positive``) or below ``minimum``."""
    requirement = "a positive finite number" if positive else "a finite number" + _bounds(minimum, None)
    if not _is_real(value):
        fail(TypeError, name, requirement, value)
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        fail(ValueError, name, requirement, value)
    if not math.isfinite(number) or (positive and number <= 0) or (minimum is not None and number < minimum):
        fail(ValueError, name, requirement, value)
    return number


def check_list(values, name: str, *, min_len: int = 0, max_len: int | None = None, what: str = "item(s)") -> list:
    """``values`` as a list: TypeError unless a sequence (list, tuple, range; a str is not one),
    ValueError when its length is out of bounds."""
    if max_len == min_len:
        count = str(min_len)
    elif max_len is None:
        count = f"at least {min_len}"
    else:
        count = f"{min_len} to {max_len}"
    requirement = f"a list of {count} {what}"
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
        fail(TypeError, name, requirement, values)
    if len(values) < min_len or (max_len is not None and len(values) > max_len):
        fail(ValueError, name, requirement, values)
    return list(values)


def check_ints(
    values,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    min_len: int = 1,
    max_len: int | None = None,
) -> list[int]:
    """A list of ints from a sequence (`check_list`), each checked by `check_int` as ``name[i]``."""
    what = "int(s)" + _bounds(minimum, maximum)
    values = check_list(values, name, min_len=min_len, max_len=max_len, what=what)
    return [check_int(v, f"{name}[{i}]", minimum=minimum, maximum=maximum) for i, v in enumerate(values)]


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of the strings ``choices``; TypeError unless a str, ValueError otherwise."""
    requirement = f"one of {tuple(choices)}"
    if not isinstance(value, str):
        fail(TypeError, name, requirement, value)
    if value not in choices:
        fail(ValueError, name, requirement, value)
    return value


def check_str(value, name: str, what: str = "a str") -> str:
    """``value`` if it is a str, else TypeError (``what`` describes it, e.g. ``"a dataset name"``)."""
    if not isinstance(value, str):
        fail(TypeError, name, what, value)
    return value
