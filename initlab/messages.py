"""How the application words what went wrong: in one line.

>>> one_line("no such file:\\n  tracking/mlflow.db")
'no such file: tracking/mlflow.db'
"""

MAX_LINE = 500
"""Characters of an error's text that a one-line report keeps."""


def one_line(message: object) -> str:
    """``str(message)`` with every run of whitespace (newlines included) made one space, cut to `MAX_LINE` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= MAX_LINE else text[:MAX_LINE] + "..."
