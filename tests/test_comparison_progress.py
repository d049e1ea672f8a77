"""The progress line (`initlab.comparison.progress`): on a terminal one live line with a bar and the time left."""

import io
import re

import pytest

from conftest import write_spec
from initlab.comparison import local, run_comparison


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("lanes", [1, 2])
def test_on_a_terminal_the_progress_is_one_live_line_with_a_bar_and_eta(tmp_path, store, lanes, monkeypatch):
    monkeypatch.setattr(local, "lanes_for", lambda *args: lanes)
    terminal = Terminal()
    spec = write_spec(tmp_path, seeds=[0, 1], epochs=2)
    run_comparison(spec, tracking_uri=store(), progress=terminal, stack=False)
    text = terminal.getvalue()
    assert "\n" not in text[:-1] and text.endswith("\n")  # one line, rewritten in place
    updates = text.split("\r")[1:]
    assert len(updates) == 4 * 2 + 1  # every epoch of each of the 4 runs, then the total
    bars = [re.match(r"\[(#*)(\.*)\] (\d)/4 runs  ETA \d+:\d\d  epoch (\d)/2", u) for u in updates[:-1]]
    assert all(bars), updates
    filled = [len(b.group(1)) for b in bars]
    assert filled == sorted(filled) and filled[-1] == len(bars[-1].group(1) + bars[-1].group(2))  # full at the end
    done = [b.group(3) for b in bars]
    if lanes == 1:  # one by one
        assert done == ["0", "0", "1", "1", "2", "2", "3", "3"]
    else:  # two at a time: the last run's last epoch comes when the other run in flight may not be done yet
        assert done == sorted(done) and done[0] == "0" and done[-1] in ("2", "3"), done
    assert re.fullmatch(r"4/4 runs trained in \d+:\d\d\x1b\[K\n", updates[-1]), updates[-1]
