"""The ``initlab`` console script: what happens before TensorFlow loads, and an exit without Python's teardown.

`initlab.cli.main` is the command itself (and what tests and other programs call); `main` here is the
console script around it, in three steps:

- **Arguments first.** They are parsed before anything heavy loads, so a usage error is immediate, and
  the commands that train nothing (``initlab list``, ``initlab spec NAME``, ``initlab serve``) never load
  TensorFlow, Keras or the library at all.
- **MLflow on the idle core.** For ``initlab compare`` the tracking process starts at once
  (`initlab.tracking.process.start_tracking_process`): it imports MLflow while this process imports
  TensorFlow, then answers every MLflow request of the comparison.
- **A quiet terminal.** TensorFlow's C++ libraries print to the process's stderr as they load (oneDNN and
  CPU-feature notices, CUDA stubs on a machine without a GPU, absl's "before InitializeLog" warning).
  Unless the user set ``TF_CPP_MIN_LOG_LEVEL`` (then they asked for those lines, and see them), it is set
  to 3 and, while the library is imported, the C++ log lines printed before TensorFlow's own logging is
  set up are dropped from stderr; anything else printed then (a Python warning, a traceback) is passed on.

When the command is done the process ends at once (`os._exit`, output flushed): Python's own teardown
after TensorFlow has loaded (freeing every module, TensorFlow's C++ destructors) takes ~2 s and keeps
nothing. By then every file and run is written: `initlab.comparison.run_comparison` returns only after its
threads are done. Ctrl-C, a closed pipe (``| head``: exit 141, silent) and an output that cannot be written
(``> /dev/full``: exit 120) end in one line at most; a bug exits the usual way.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import re
import signal
import sys
import tempfile
from typing import NoReturn

from initlab import cli
from initlab.tracking.process import start_tracking_process

TRAINING_COMMANDS = ("compare", "diagnose")
"""The commands that need the library (and so TensorFlow)."""

_CPP_LOG_LINE = re.compile(
    r"[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] |WARNING: All log messages before absl::InitializeLog\(\) is called"
)


def main() -> NoReturn:
    """Runs the ``initlab`` command on ``sys.argv`` and ends the process with its exit status."""
    _exit_at_once(_command(sys.argv[1:]))


def _command(argv: list[str]) -> int:
    """The command's exit status: its arguments parsed, the tracking process beside a comparison, the library
    imported quietly for the commands that train."""
    args = cli.parser().parse_args(argv)
    tracking = start_tracking_process(args.tracking_uri) if args.command == "compare" else None
    try:
        if args.command in TRAINING_COMMANDS:
            received = _import_library_deferring_signals()
            if received is not None:  # while TensorFlow loaded: nothing ran yet
                said = "terminated (SIGTERM)" if received == signal.SIGTERM else "interrupted (Ctrl-C)"
                print(f"initlab {args.command}: {said} before anything ran", file=sys.stderr)
                return 128 + received
        return cli.run(args)
    except BrokenPipeError:  # the reader of the output went away (| head): nothing more to say, as any Unix tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"initlab {args.command}: cannot write the output ({e.strerror})", file=sys.stderr)
        return 120
    finally:
        if tracking is not None:  # its requests are answered by now; a new store not adopted is not left behind
            tracking.end()


def _import_library_deferring_signals() -> int | None:
    """`_import_library`, with Ctrl-C and SIGTERM held until it is done (one raised inside TensorFlow's or JAX's import
    leaves half-imported modules and a traceback, or lands in a garbage-collection callback and is lost); returns the
    signal received meanwhile, if any. Afterwards SIGTERM raises `initlab.comparison.progress.Terminated`, as Ctrl-C
    raises `KeyboardInterrupt`: the command ends in one line wherever it is."""
    received = []
    handlers = {
        signum: signal.signal(signum, lambda signum, frame: received.append(signum))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        _import_library()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    from initlab.comparison.progress import Terminated

    def terminate(signum, frame):
        raise Terminated

    signal.signal(signal.SIGTERM, terminate)
    return received[0] if received else None


def _import_library() -> None:
    """Imports `initlab.comparison` (the library, Keras, TensorFlow); unless ``TF_CPP_MIN_LOG_LEVEL`` is set, with
    it set to 3 and file descriptor 2 sent to a file meanwhile, then replayed without C++ log lines."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        importlib.import_module("initlab.comparison")
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            importlib.import_module("initlab.comparison")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not _CPP_LOG_LINE.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def _exit_at_once(status: int) -> NoReturn:
    """Ends the process with ``status`` after flushing logging and the standard streams, skipping Python's teardown.
    Output that cannot be written when flushed (a full disk: exit 120, as Python gives it; a closed pipe: 141) is
    said in one line on stderr (a closed pipe silently)."""
    logging.shutdown()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        status = status or 141
    except OSError as e:
        status = status or 120
        with contextlib.suppress(OSError):
            print(f"initlab: cannot write the output ({e.strerror})", file=sys.stderr)
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(status)
