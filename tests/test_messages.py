"""Errors said in one line (`initlab.messages`), showing at most `MAX_SHOWN` characters of what the user gave."""

from initlab.messages import MAX_LINE, MAX_SHOWN, one_line, shown, shown_text
from keras_initlab import checks


def test_one_line_joins_every_run_of_whitespace_and_cuts_long_text():
    assert one_line("no such file:\n\t  tracking/mlflow.db ") == "no such file: tracking/mlflow.db"
    assert one_line(ValueError("bad\nvalue")) == "bad value"
    assert one_line("x" * MAX_LINE) == "x" * MAX_LINE
    assert one_line("x " * MAX_LINE) == ("x " * MAX_LINE)[:MAX_LINE] + "..."


def test_a_value_is_shown_in_at_most_80_characters_with_its_length():
    assert MAX_SHOWN == 80  # the README's promise
    assert shown("sparce10") == "'sparce10'" and shown(-1.0) == "-1.0"
    assert shown("z" * 5000) == "'" + "z" * 79 + "... (5002 characters)"
    assert shown("z" * 78) == repr("z" * 78)  # 80 characters with its quotes: whole
    assert shown_text("z" * 5000) == "z" * 80 + "... (5000 characters)"
    assert shown_text("a key\nwith  a newline") == "a key with a newline"  # the error stays one line
    for value in ("z" * 5000, "z" * 79, ["z"] * 1000, -1):  # the library says values the same way
        assert shown(value) == checks.shown(value)
