"""The ``initlab`` command's entry point; outside the package, so that it runs before TensorFlow loads.

Two things happen here, before ``import keras_initlab`` (which imports TensorFlow: seconds, on one core):

- **A quiet terminal.** TensorFlow's C++ libraries print to the process's stderr as they load and on
  the first XLA compile: oneDNN and CPU-feature notices, CUDA stubs on a machine without a GPU,
  absl's "before InitializeLog" warning. Unless the user set ``TF_CPP_MIN_LOG_LEVEL`` (then they
  asked for those lines, and see them), the command sets it to 3 and, while the package is
  imported, drops from stderr the C++ log lines that come before TensorFlow's own logging is set
  up (the CUDA stubs'); anything else printed then (a Python warning, a traceback) is passed on.
- **MLflow loads on the idle core.** For ``initlab compare`` a second process, the *writer*
  (`keras_initlab.tracking.serve`), starts at once: it imports MLflow (seconds of one core) while
  this process imports TensorFlow, then makes every MLflow request of the comparison
  (`take_writer_process`; `keras_initlab.tracking.RemoteTracker`), so that MLflow never competes with
  training for this process's GIL. It loads `keras_initlab.tracking` without the package's
  ``__init__`` (no TensorFlow there). Into a SQLite file that does not exist yet (``--tracking-uri
  sqlite:///...``, ``$MLFLOW_TRACKING_URI``, or the default ``tracking/mlflow.db``) it first creates an
  empty MLflow store beside it (MLflow's schema migrations), under the store's lock file, and adopts
  it (`PREPARED_STORE_VARIABLE`) when the comparison opens its store; a comparison refused before that
  (a bad spec) leaves no store behind.

When the command is done it ends the process at once (`os._exit`, output flushed): Python's own
teardown after TensorFlow has loaded (freeing every module, TensorFlow's C++ destructors) takes ~2 s and
keeps nothing. By then every file and run is written: `keras_initlab.comparison.run_comparison` returns
only after its threads are done. A command that raises (Ctrl-C, a bug) exits the usual way.

``initlab serve`` needs none of the package but `keras_initlab.server` (the standard library only): it is
imported alone, without the package's ``__init__``, and the process becomes MLflow's server in a second.

``python -m keras_initlab`` imports the package first and does none of this.
"""

import importlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
import types
from typing import NoReturn

_CPP_LOG_LINE = re.compile(
    r"[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] |WARNING: All log messages before absl::InitializeLog\(\) is called"
)


PREPARED_STORE_VARIABLE = "KERAS_INITLAB_PREPARED_STORE"
"""Names the store file created for this command (`keras_initlab.tracking` renames it into place)."""

_WRITER = ("import json, sys, keras_initlab_cli; "
           "keras_initlab_cli._module_alone('tracking').serve(**json.loads(sys.argv[1]))")
"""The writer process: `keras_initlab.tracking` alone (`_module_alone`: the package's ``__init__`` would import
TensorFlow), then `keras_initlab.tracking.serve` with the file descriptors and store in ``argv[1]``."""

_writer: tuple | None = None


def take_writer_process() -> tuple | None:
    """The connections ``(requests, replies)`` to the writer process this command started, to the first caller;
    ``None`` when there is none (another command, the package used as a library)."""
    global _writer
    taken, _writer = _writer, None
    return taken


def main() -> NoReturn:
    """Runs `keras_initlab.cli.main` on ``sys.argv`` and ends the process with its exit status."""
    _exit_at_once(_command())


def _command() -> int:
    """`keras_initlab.cli.main` on ``sys.argv``, imported quietly, with the writer process beside; its exit status.
    ``initlab serve`` does not need the package: `keras_initlab.server` alone, which becomes MLflow's server."""
    if sys.argv[1:2] == ["serve"]:
        return _module_alone("server").main(sys.argv[2:])
    writer = _start_writer(sys.argv[1:])
    try:
        if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
            from keras_initlab.cli import main as command
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
            command = _import_quietly()
        return command()
    finally:
        if writer is not None:  # its requests are answered by now; a new store not adopted is not left behind
            process, store = writer
            if process.poll() is None:
                process.kill()
                process.wait()
            for leftover in (store, store + ".partial") if store is not None else ():
                if os.path.exists(leftover):
                    os.remove(leftover)


def _module_alone(name: str):
    """``keras_initlab.<name>`` imported under an empty ``keras_initlab`` package: without the package's
    ``__init__``, which imports TensorFlow (for modules that import nothing else of the package)."""
    package = types.ModuleType("keras_initlab")
    package.__path__ = list(importlib.util.find_spec("keras_initlab").submodule_search_locations)
    sys.modules["keras_initlab"] = package
    return importlib.import_module(f"keras_initlab.{name}")


def _exit_at_once(status: int) -> NoReturn:
    """Ends the process with ``status`` after flushing logging and the standard streams, skipping Python's teardown
    (an output that cannot be flushed, e.g. a full disk, is exit status 120, as Python gives it)."""
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        status = status or 120
    os._exit(status)


def _sqlite_store(argv: list[str]) -> str | None:
    """The database file ``initlab compare`` will track to when it is a SQLite store (the same rule as
    `keras_initlab.tracking.resolve_tracking_uri`); ``None`` for any other command or store."""
    if not argv or argv[0] != "compare":
        return None
    uri = None
    for i, arg in enumerate(argv):
        if arg == "--tracking-uri" and i + 1 < len(argv):
            uri = argv[i + 1]
        elif arg.startswith("--tracking-uri="):
            uri = arg.split("=", 1)[1]
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None:
        return _default_store()
    return uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None


def _default_store() -> str:
    return os.path.join(os.getcwd(), "tracking", "mlflow.db")


def _start_writer(argv: list[str]):
    """Starts the writer process for ``initlab compare``: ``(process, new store file or None)``; ``None`` for any
    other command. It also makes the comparison's SQLite store if that does not exist yet, unless another
    comparison holds the store's lock (that one makes it) or the folder cannot be used (the comparison says why)."""
    import json
    import subprocess
    from multiprocessing.connection import Connection

    global _writer
    if not argv or argv[0] != "compare":
        return None
    lock, store = _lock_new_store(argv)
    requests = os.pipe()
    replies = os.pipe()
    descriptors = {"requests": requests[0], "replies": replies[1], "new_store": store,
                   "lock": lock.fileno() if lock is not None else None}
    env = dict(os.environ, **({PREPARED_STORE_VARIABLE: store} if store is not None else {}))
    # The process holds the lock (its copy of the descriptor) until the store is made: opening it waits for that.
    process = subprocess.Popen([sys.executable, "-c", _WRITER, json.dumps(descriptors)], env=env,
                               pass_fds=[fd for fd in descriptors.values() if isinstance(fd, int)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    for fd in (requests[0], replies[1]):
        os.close(fd)
    if lock is not None:
        lock.close()
    _writer = (Connection(requests[1], readable=False), Connection(replies[0], writable=False))
    return process, store


def _lock_new_store(argv: list[str]):
    """``(lock file, name to make the store under)`` when ``argv``'s comparison goes to a SQLite file that does not
    exist yet and its lock (``<database>.lock``) is free; ``(None, None)`` otherwise."""
    import fcntl

    database = _sqlite_store(argv)
    if database is None or os.path.exists(database) or os.path.basename(database) in ("", ".", ".."):
        return None, None
    try:
        if database == _default_store():
            os.makedirs(os.path.dirname(database), exist_ok=True)
        lock = open(os.path.splitext(database)[0] + ".lock", "a")
    except OSError:  # the comparison reports what is wrong with the folder
        return None, None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return None, None
    return lock, os.path.join(os.path.dirname(database), f".{os.path.basename(database)}.{os.getpid()}.new")


def _import_quietly():
    """``keras_initlab.cli.main``, imported with file descriptor 2 sent to a file, then replayed without C++ log lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            from keras_initlab.cli import main as command
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not _CPP_LOG_LINE.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()
    return command
