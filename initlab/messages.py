"""How the application words what went wrong: in one line (`one_line`), showing at most `MAX_SHOWN` characters of
anything the user gave (`shown` for a value, `shown_text` for a key, a name or a path as written).

>>> one_line("no such file:\\n  tracking/mlflow.db")
'no such file: tracking/mlflow.db'
>>> shown("x" * 5000)
"'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... (5002 characters)"

Imports nothing, so that the modules that answer at once (`initlab.spec_files`) use it too.
"""

MAX_LINE = 500
"""Characters of an error's text that a one-line report keeps."""

MAX_SHOWN = 80
"""Characters of a user's value that an error shows: the README's promise, and the library's own rule
(`keras_initlab.checks.shown`, which the library's argument errors use; the library never imports this module)."""


def one_line(message: object) -> str:
    """``str(message)`` with every run of whitespace (newlines included) made one space, cut to `MAX_LINE`
    characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= MAX_LINE else text[:MAX_LINE] + "..."


def shown(value: object) -> str:
    """How an error shows a value the user gave: ``repr(value)``, cut to `MAX_SHOWN` characters (with its full
    length) when longer."""
    return _cut(repr(value))


def shown_text(text: object) -> str:
    """How an error shows a key, a name or a path the user gave: as written, without quotes, every run of whitespace
    made one space (the error stays one line), cut like `shown`."""
    return _cut(" ".join(str(text).split()))


def _cut(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"
