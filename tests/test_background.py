"""Threads beside training (`initlab.background`): the GIL handoff is scoped to its block."""

import sys

import pytest

from initlab.background import BACKGROUND_SWITCH_INTERVAL, quick_gil_handoff


def test_quick_gil_handoff_is_scoped_to_the_block():
    microseconds = 2e-6  # Python keeps the interval in whole microseconds, rounded down
    previous = sys.getswitchinterval()
    with quick_gil_handoff():
        assert sys.getswitchinterval() == pytest.approx(BACKGROUND_SWITCH_INTERVAL, abs=microseconds)
    assert sys.getswitchinterval() == previous
    with pytest.raises(RuntimeError), quick_gil_handoff():
        raise RuntimeError("a failing comparison")
    assert sys.getswitchinterval() == previous
    try:  # a user's smaller interval is kept
        sys.setswitchinterval(BACKGROUND_SWITCH_INTERVAL / 10)
        with quick_gil_handoff():
            assert sys.getswitchinterval() == pytest.approx(BACKGROUND_SWITCH_INTERVAL / 10, abs=microseconds)
    finally:
        sys.setswitchinterval(previous)
