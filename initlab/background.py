"""Work beside training: threads that take the cores training leaves idle, and hand the GIL back quickly.

A comparison prepares the next models and writes MLflow runs on background threads (and the
``initlab`` command's tracking process) while the current models train; `lower_thread_priority`
makes those threads yield the cores, `quick_gil_handoff` makes them yield Python's GIL.

>>> with quick_gil_handoff():
...     sys.getswitchinterval() <= BACKGROUND_SWITCH_INTERVAL
True
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

BACKGROUND_NICENESS = 10
"""How much lower than training the threads that prepare and write runs are scheduled (Linux ``nice`` steps)."""


def lower_thread_priority() -> None:
    """Lowers the calling thread's scheduling priority by `BACKGROUND_NICENESS` (on Linux, where a thread
    has its own; elsewhere nothing): the work of a background thread then takes the cores that training
    leaves idle, not the cores it uses."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)


BACKGROUND_SWITCH_INTERVAL = 5e-4
"""Seconds a thread may hold Python's GIL while another waits for it, during a comparison (Python's default: 0.005)."""


@contextlib.contextmanager
def quick_gil_handoff() -> Iterator[None]:
    """Sets Python's thread switch interval to `BACKGROUND_SWITCH_INTERVAL` for the duration of the block.

    Training runs in compiled TensorFlow loops that release the GIL, but between them
    (every epoch: write-back, losses, callbacks) it needs the GIL back; with the default
    interval each handoff waits up to 5 ms for a background thread running Python
    (MLflow's SQLAlchemy, Keras' model building). Measured on 2 cores (`scripts/bench_background.py`):
    a background thread running Python half the time slows stacked training by 13% at 5 ms, by 4-6%
    at 0.5 ms. A smaller interval the caller set is kept.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, BACKGROUND_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
