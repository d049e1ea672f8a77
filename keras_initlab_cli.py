"""The ``initlab`` command's entry point; outside the package, so that it runs before TensorFlow loads.

Two things happen here, before ``import keras_initlab`` (which imports TensorFlow: seconds, on one core):

- **A quiet terminal.** TensorFlow's C++ libraries print to the process's stderr as they load and on
  the first XLA compile: oneDNN and CPU-feature notices, CUDA stubs on a machine without a GPU,
  absl's "before InitializeLog" warning. Unless the user set ``TF_CPP_MIN_LOG_LEVEL`` (then they
  asked for those lines, and see them), the command sets it to 3 and, while the package is
  imported, drops from stderr the C++ log lines that come before TensorFlow's own logging is set
  up (the CUDA stubs'); anything else printed then (a Python warning, a traceback) is passed on.
- **A new SQLite store is created on the idle core.** For ``initlab compare`` into a SQLite file that
  does not exist yet (``--tracking-uri sqlite:///...``, ``$MLFLOW_TRACKING_URI``, or the default
  ``tracking/mlflow.db``), a second process creates an empty MLflow store (MLflow's import and schema
  migrations, seconds of one core) beside it, under the store's lock file, while this process
  imports TensorFlow. `keras_initlab.tracking` adopts it (`PREPARED_STORE_VARIABLE`) when the
  comparison opens its store; a comparison refused before that (a bad spec) leaves no store behind.

``python -m keras_initlab`` imports the package first and does neither.
"""

import os
import re
import sys
import tempfile

_CPP_LOG_LINE = re.compile(
    r"[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] |WARNING: All log messages before absl::InitializeLog\(\) is called"
)


PREPARED_STORE_VARIABLE = "KERAS_INITLAB_PREPARED_STORE"
"""Names the store file created for this command (`keras_initlab.tracking` renames it into place)."""

_CREATE_STORE = (
    "import os, sys; from mlflow.tracking import MlflowClient; "
    "MlflowClient('sqlite:///' + sys.argv[1] + '.partial').search_experiments(); "
    "os.replace(sys.argv[1] + '.partial', sys.argv[1])"
)


def main() -> int:
    """Runs `keras_initlab.cli.main` on ``sys.argv``; returns its exit status."""
    creating = _create_store_beside(sys.argv[1:])
    try:
        if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
            from keras_initlab.cli import main as command
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
            command = _import_quietly()
        return command()
    finally:
        if creating is not None:  # not adopted (a refused spec, an error): nothing is left behind
            process, store = creating
            if process.poll() is None:
                process.kill()
                process.wait()
            for leftover in (store, store + ".partial"):
                if os.path.exists(leftover):
                    os.remove(leftover)


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


def _create_store_beside(argv: list[str]):
    """Starts creating the SQLite store of ``argv``'s comparison if it does not exist yet: ``(process,
    file)``, the file named in `PREPARED_STORE_VARIABLE`; ``None`` when there is nothing to create or
    another comparison holds the store's lock (it creates the store itself)."""
    import fcntl
    import subprocess

    database = _sqlite_store(argv)
    if database is None or os.path.exists(database) or os.path.basename(database) in ("", ".", ".."):
        return None
    try:
        if database == _default_store():
            os.makedirs(os.path.dirname(database), exist_ok=True)
        lock = open(os.path.splitext(database)[0] + ".lock", "a")
    except OSError:  # the comparison reports what is wrong with the folder
        return None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None
        store = os.path.join(os.path.dirname(database), f".{os.path.basename(database)}.{os.getpid()}.new")
        # The process holds the lock (its copy of the descriptor) until it exits: opening the store waits for it.
        process = subprocess.Popen([sys.executable, "-c", _CREATE_STORE, store], pass_fds=(lock.fileno(),),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ[PREPARED_STORE_VARIABLE] = store
    return process, store


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
