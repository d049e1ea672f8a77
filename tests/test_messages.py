"""Errors said in one line (`initlab.messages`)."""

from initlab.messages import MAX_LINE, one_line


def test_one_line_joins_every_run_of_whitespace_and_cuts_long_text():
    assert one_line("no such file:\n\t  tracking/mlflow.db ") == "no such file: tracking/mlflow.db"
    assert one_line(ValueError("bad\nvalue")) == "bad value"
    assert one_line("x" * MAX_LINE) == "x" * MAX_LINE
    assert one_line("x " * MAX_LINE) == ("x " * MAX_LINE)[:MAX_LINE] + "..."
