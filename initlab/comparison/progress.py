"""A comparison's progress line (`Progress`) and its Ctrl-C and SIGTERM (`Interrupts`): the checks made after every
epoch.

>>> with Interrupts() as interrupts:                                       # doctest: +SKIP
...     bar = Progress(sys.stderr, runs=6, epochs=30, checks=[interrupts.check])
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Callable, Sequence

import keras

from initlab.spec import Run


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (a `KeyboardInterrupt`: the runs in flight end KILLED, the finished ones are
    kept); the ``initlab`` command exits with `exit_status` (128 + 15, as a shell reports a process it ended)."""

    exit_status = 143


class Interrupts:
    """Ctrl-C and SIGTERM, never lost.

    Python raises `KeyboardInterrupt` wherever the main thread is, and drops it when that is a
    finalizer (an object's ``__del__`` run by the garbage collector: "Exception ignored in ..."),
    so a comparison could go on to the end. While this context is active a SIGINT is also
    remembered, and `check` (after every epoch and before every group) raises it again. A SIGTERM
    (``kill``, a job scheduler, a container stopping) raises `Terminated` the same way.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: KeyboardInterrupt | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():  # whatever a library installed before
            self.previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        self.received = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        raise self.received

    def check(self) -> None:
        if self.received is not None:
            raise self.received

    def __exit__(self, *exc_info) -> None:
        for signum, previous in self.previous.items():  # None: a handler installed outside Python
            if previous is None:
                previous = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, previous)


class Progress(keras.callbacks.Callback):
    """The comparison's progress on ``stream`` (``None``: silent), and the checks made after every epoch.

    On a terminal one live line: a bar over all the epochs to train (every run's), the
    runs done, the epoch of the runs in training and the estimated time left. Elsewhere
    (a pipe, a file) one line per epoch: ``[2/6 runs done] <runs>: epoch 3/30  (<run>:
    val_accuracy 0.9123)``. ``checks`` (Ctrl-C, a store that failed) run after every epoch.
    """

    BAR = 24

    def __init__(self, stream, runs: int, epochs: int, checks: Sequence[Callable[[], None]]):
        super().__init__()
        self.stream, self.runs, self.epochs, self.checks = stream, runs, epochs, checks
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.done, self.size, self.label, self.reporting = 0, 1, "", ""
        self.trained = 0  # run-epochs trained so far
        self.reported: dict[tuple[str, ...], int] = {}  # the epochs reported of each group in training
        self.started = time.perf_counter()

    def start(self, runs: Sequence[Run]) -> None:
        """A new group of ``runs``, trained together; this callback sees the logs of the last one."""
        self.size, self.label, self.reporting = len(runs), _label(runs), runs[-1].key

    def on_epoch_end(self, epoch, logs=None):
        for check in self.checks:
            check()
        self.trained += self.size
        if self.stream is None:
            return
        accuracy = f"val_accuracy {logs['val_accuracy']:.4f}" if logs and "val_accuracy" in logs else ""
        if self.tty:
            self._live(epoch, accuracy)
        else:
            line = f"[{self.done}/{self.runs} runs done] {self.label}: epoch {epoch + 1}/{self.epochs}"
            self.stream.write(line + (f"  ({self.reporting}: {accuracy})" if accuracy else "") + "\n")
        self.stream.flush()

    def _live(self, epoch: int, accuracy: str) -> None:
        total = self.runs * self.epochs
        filled = round(self.BAR * self.trained / total)
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.trained * (total - self.trained)
        line = (
            f"[{'#' * filled}{'.' * (self.BAR - filled)}] {self.done}/{self.runs} runs  ETA {_clock(eta)}  "
            f"epoch {epoch + 1}/{self.epochs}  {accuracy}  {self.label}"
        )
        width = shutil.get_terminal_size().columns - 1
        self.stream.write("\r" + line[:width] + "\x1b[K")

    def report(self, runs: Sequence[Run], epoch: int, logs: dict | None) -> None:
        """Epoch ``epoch`` (0-based) of a group of ``runs`` trained elsewhere (a lane, a unit on a cluster), with the
        logs of its last run; groups report side by side."""
        self.start(runs)
        self.reported[_keys(runs)] = epoch + 1
        self.on_epoch_end(epoch, logs)

    def finish(self, runs: Sequence[Run]) -> None:
        """A group of ``runs`` done (however many epochs it trained: the bar counts all of its epochs)."""
        self.done += len(runs)
        self.trained += (self.epochs - self.reported.pop(_keys(runs), 0)) * len(runs)

    def close(self) -> None:
        """On a terminal, the live line gives way to the total time."""
        if self.stream is not None and self.tty:
            elapsed = _clock(time.perf_counter() - self.started)
            self.stream.write(f"\r{self.done}/{self.runs} runs trained in {elapsed}\x1b[K\n")
            self.stream.flush()


class RelayedProgress(Progress):
    """A group's progress where it trains (a lane, a Ray worker): every epoch, with the logs of its last run, handed
    to ``send`` as ``(index, epoch, logs)`` for the comparison's `Progress.report`; ``checks`` run after every epoch
    where it trains. The watched layers' statistics are left out (they are not for the line)."""

    def __init__(self, send: Callable[[tuple], object], index: int, runs: int, epochs: int, checks):
        super().__init__(None, runs, epochs, checks)
        self.send, self.index = send, index

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.send(
            (
                self.index,
                epoch,
                {key: float(value) for key, value in (logs or {}).items() if not key.startswith("layers/")},
            )
        )


def _keys(runs: Sequence[Run]) -> tuple[str, ...]:
    return tuple(run.key for run in runs)


def _label(runs: Sequence[Run]) -> str:
    """The run keys of a group, or for more than two ``<schemes> x seed(s) <seeds>`` when they form that grid."""
    schemes = list(dict.fromkeys(run.scheme.name for run in runs))
    seeds = list(dict.fromkeys(str(run.seed) for run in runs))
    if len(runs) <= 2 or len(runs) != len(schemes) * len(seeds):
        return ", ".join(run.key for run in runs)
    return f"{', '.join(schemes)} x seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"


def _clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour)."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
