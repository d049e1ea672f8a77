"""The tracking store: which one (`resolve_tracking_uri`), whether it can be used (`check_reachable`,
`check_writable`, before any work), its lock, and where child runs wait as records (`pending_root`).

Tracking URI: the ``uri`` argument, else ``$MLFLOW_TRACKING_URI``, else a SQLite store
``tracking/mlflow.db`` under the current directory (artifacts beside it in ``tracking/artifacts``).
Requests to a tracking server give up after `HTTP_LIMITS` (seconds, not MLflow's minutes of
retries), so a dead server is reported within about half a minute.

>>> pending_root("sqlite:///tmp/store/mlflow.db")
PosixPath('/tmp/store/pending')
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

STORE_DIR = "tracking"
"""The default store's folder, under the current directory."""

PREPARED_STORE_VARIABLE = "KERAS_INITLAB_PREPARED_STORE"
"""Names the store file that the ``initlab`` command's tracking process made for it (`initlab.tracking.process`);
`adopt_prepared_store` renames it into place."""

HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
"""MLflow's HTTP client settings during a comparison, unless the environment sets them: a refused
connection fails in ~3 s, a server that hangs in ~33 s (MLflow's defaults retry for minutes)."""


STORE_FIX = (
    "Pass --tracking-uri (or set MLFLOW_TRACKING_URI) to sqlite:///<absolute path in a writable folder> "
    "or http://<host>:<port> of a running server (initlab serve)."
)


class TrackingUnavailableError(RuntimeError):
    """The tracking store cannot be used; the message names the URI (or path) and the fix."""


class TrackingLostError(TrackingUnavailableError):
    """The tracking store stopped answering during a comparison; finished runs wait as pending records."""


def default_database() -> Path:
    """The default store's database: ``tracking/mlflow.db`` under the current directory."""
    return Path.cwd() / STORE_DIR / "mlflow.db"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/tracking/mlflow.db`` (its folder is made when the
    store is, not here: a comparison refused before that leaves nothing behind).

    Raises:
        TrackingUnavailableError: a URI with a login in it (``http://user:password@host``), which MLflow does not
            send: the message names the variables that hold it, and never shows the password.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        login = urllib.parse.urlsplit(uri)
        if login.username is not None or login.password is not None:
            where = login._replace(netloc=login.netloc.rpartition("@")[2]).geturl()
            raise TrackingUnavailableError(
                f"the tracking URI holds a login ({login.scheme}://{login.username}:***@...); MLflow reads it from the "
                f"environment: pass {where} and set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            )
        return uri
    store = default_database().parent
    if store.exists() and not store.is_dir():
        raise TrackingUnavailableError(
            f"{store} is a file, not a folder: the default MLflow store goes there. "
            "Move the file away or pass --tracking-uri."
        )
    return f"sqlite:///{default_database()}"


@contextlib.contextmanager
def http_limits() -> Iterator[None]:
    """Sets `HTTP_LIMITS` in the environment (where unset) for the duration of the block."""
    added = {key: value for key, value in HTTP_LIMITS.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def quiet_store_logging() -> None:
    """Keeps MLflow's SQL layer from logging a store error's traceback: the comparison reports it itself, in one
    line."""
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def refusal(uri: str, error: BaseException) -> TrackingUnavailableError | None:
    """The error for a server that refused the login or the permission; None for any other error."""
    if getattr(error, "error_code", None) not in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return None
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    return TrackingUnavailableError(
        f"the MLflow server {uri} refused "
        + (f"the login of MLFLOW_TRACKING_USERNAME={user!r}" if user else "a request without a login")
        + f" ({error.error_code}): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user "
        "of that server with write access to the experiment."
    )


def is_tracking_error(error: BaseException) -> bool:
    """Whether ``error`` comes from the tracking store: MLflow's own errors, HTTP failures, and the
    operating system's (a full disk, a folder that cannot be written; HTTP connection errors are OSErrors)."""
    from mlflow.exceptions import MlflowException

    return isinstance(error, (MlflowException, OSError))


def sqlite_database(uri: str) -> Path | None:
    """The database file of a SQLite store's ``sqlite:///<path>``; ``None`` for any other store."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def pending_root(uri: str) -> Path:
    """Where child runs are staged: ``pending/`` beside a SQLite store; for any other store
    ``$XDG_CACHE_HOME/keras-initlab/pending`` (default ``~/.cache``)."""
    database = sqlite_database(uri)
    if database is not None:
        return database.parent / "pending"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "keras-initlab" / "pending"


def _named_database(uri: str) -> Path:
    """The database file of the SQLite store ``uri``; a `TrackingUnavailableError` when the URI names none."""
    database = sqlite_database(uri)
    if database.name in ("", ".", ".."):
        raise TrackingUnavailableError(f"the MLflow store {uri} names no database file. {STORE_FIX}")
    return database


def lock_file(uri: str):
    """``<database>.lock`` of a SQLite store, opened for appending (created, with its folder, if need be)."""
    lock_path = _named_database(uri).with_suffix(".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        return open(lock_path, "a")
    except OSError as e:
        raise TrackingUnavailableError(
            f"cannot use the MLflow store {uri}: {lock_path.parent} is not a writable folder ({e.strerror}). "
            + STORE_FIX
        ) from None


def adopt_prepared_store(uri: str) -> None:
    """Renames the new, empty store that the ``initlab`` command made for this process while TensorFlow
    loaded (named by `PREPARED_STORE_VARIABLE`) to the database of ``uri`` if that does
    not exist yet (called under `store_lock`, which waits until the store is made)."""
    prepared, database = os.environ.pop(PREPARED_STORE_VARIABLE, None), sqlite_database(uri)
    if prepared is None or database is None:
        return
    if Path(prepared).parent == database.parent and Path(prepared).is_file() and not database.exists():
        os.replace(prepared, database)


_SQLITE_HEADER = b"SQLite format 3\x00"


def check_writable(uri: str) -> None:
    """Fails fast, before any work, when the folder of a SQLite store or of the pending records
    (`pending_root`) cannot be written, or the store's file is not a SQLite database."""
    if uri.startswith("sqlite:///"):
        database = _named_database(uri)
        try:
            _try_writing_in(database.parent)
        except OSError as e:
            where = "run from a writable folder or pass --tracking-uri" if database == default_database() else STORE_FIX
            raise TrackingUnavailableError(
                f"cannot use the MLflow store {uri}: {database.parent} is not a writable folder ({e.strerror}). {where}"
            ) from None
        if database.is_dir():
            raise TrackingUnavailableError(f"cannot use the MLflow store {uri}: {database} is a folder. {STORE_FIX}")
        with contextlib.suppress(OSError), open(database, "rb") as file:
            header = file.read(len(_SQLITE_HEADER))
            if header and header != _SQLITE_HEADER:
                raise TrackingUnavailableError(
                    f"cannot use the MLflow store {uri}: {database} is not a SQLite database. {STORE_FIX}"
                )
    try:
        _try_writing_in(pending_root(uri))
    except OSError as e:
        raise TrackingUnavailableError(
            f"cannot write the records of child runs to {pending_root(uri)} ({e.strerror}); "
            "set XDG_CACHE_HOME to a writable folder."
        ) from None


def _try_writing_in(folder: Path) -> None:
    """Raises the `OSError` that making ``folder`` and a file in it raises; what it made to find out (the missing
    folders, a nameless file) is removed: a check leaves nothing behind."""
    made = []
    try:
        for path in reversed([path for path in (folder, *folder.parents) if not path.exists()]):
            path.mkdir()
            made.append(path)
        with tempfile.TemporaryFile(dir=folder):
            pass
    finally:
        for path in reversed(made):
            with contextlib.suppress(OSError):
                path.rmdir()


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock on ``<database>.lock`` while a SQLite store is opened (and perhaps created):
    two comparisons starting on a new store would otherwise both run MLflow's schema migrations."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    while True:
        with lock_file(uri) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not holds_lock_file(lock):  # removed meanwhile by a command refused before its store existed
                    continue
                yield
                return
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def holds_lock_file(lock) -> bool:
    """Whether the locked file ``lock`` is still the lock file at its path. The ``initlab`` command removes the lock
    file it made when its comparison was refused before the store existed (`initlab.tracking.process`), holding the
    lock; a process that waited on the removed file must open the path again."""
    try:
        return os.path.samestat(os.fstat(lock.fileno()), os.stat(lock.name))
    except FileNotFoundError:
        return False


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fails fast, before any training, when an HTTP tracking server does not answer its health check."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status != 200:
                raise TrackingUnavailableError(f"MLflow tracking server {uri} answered HTTP {response.status}.")
    except (urllib.error.URLError, OSError) as e:
        local = (
            "unset MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") == uri else "leave out --tracking-uri"
        )
        raise TrackingUnavailableError(
            f"MLflow tracking server {uri} is unreachable ({e}). Start one (initlab serve) or {local} to use the "
            "local SQLite store."
        ) from None


def artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store go beside the database; a server decides for itself."""
    database = sqlite_database(uri)
    return None if database is None else (database.parent / "artifacts").resolve().as_uri()
