"""The tracking process: MLflow's requests answered in a process of their own, started before TensorFlow loads.

For ``initlab compare`` the command starts it at once (`start_tracking_process`): it imports MLflow
(seconds of one core) while the command imports TensorFlow on the other, then makes every MLflow
request of the comparison (`RemoteTracker`, which `initlab.tracking.queue.TrackingQueue` takes with
`take_tracking_process`), so that MLflow never competes with training for the command's GIL. Into a
SQLite file that does not exist yet it first makes an empty MLflow store beside it (MLflow's schema
migrations), under the store's lock file, which the comparison adopts when it opens its store
(`initlab.tracking.store.PREPARED_STORE_VARIABLE`); a comparison refused before that (a bad spec)
leaves nothing behind: no store, and not the folder or lock file made for it (`TrackingProcess.end`).
Nothing here imports Keras or TensorFlow.

>>> process = start_tracking_process(None)     # the default store, tracking/mlflow.db  # doctest: +SKIP
>>> requests, replies = take_tracking_process()                                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import glob
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from initlab.background import BACKGROUND_NICENESS
from initlab.messages import one_line
from initlab.tracking.records import TrackerBase
from initlab.tracking.store import (
    PREPARED_STORE_VARIABLE,
    TrackingUnavailableError,
    default_database,
    holds_lock_file,
    http_limits,
    is_tracking_error,
    quiet_store_logging,
    sqlite_database,
)
from initlab.tracking.tracker import ComparisonTracker

_SERVE = "import json, sys; from initlab.tracking.process import serve; serve(**json.loads(sys.argv[1]))"
"""The tracking process's program: `serve` with the file descriptors and store in ``argv[1]``."""

_connections: tuple[Connection, Connection] | None = None


@dataclasses.dataclass
class TrackingProcess:
    """The tracking process this command started, and the new store it makes (``None`` if none)."""

    process: subprocess.Popen
    new_store: str | None
    database: Path | None = None
    """The store's database file (a SQLite store's; ``None`` for any other)."""
    made: tuple[Path, ...] = ()
    """The store's lock file and folder, where this command made them (removed with a store no comparison adopted)."""

    def end(self) -> None:
        """Ends the process if it still runs (its requests are answered by now). A new store that no comparison
        adopted (a refused spec, a command interrupted early) is removed, and with it the lock file and the folder
        made for it, unless another comparison uses them: nothing is left behind."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.new_store is None:
            return
        new_store = Path(self.new_store)
        for leftover in new_store.parent.glob(new_store.name + "*"):  # with .partial and SQLite's journal
            leftover.unlink(missing_ok=True)
        for path in self.made:
            if path == self.database.with_suffix(".lock"):
                _remove_lock_file(self.database)
            else:
                with contextlib.suppress(OSError):  # not empty: in use
                    path.rmdir()


def take_tracking_process() -> tuple[Connection, Connection] | None:
    """The connections ``(requests, replies)`` to the tracking process this command started, to the first caller;
    ``None`` when there is none (another command, the package used as a library)."""
    global _connections
    taken, _connections = _connections, None
    return taken


def start_tracking_process(tracking_uri: str | None) -> TrackingProcess:
    """Starts the tracking process for a comparison tracked to ``tracking_uri`` (``None``: ``$MLFLOW_TRACKING_URI``,
    else the default store). It also makes the comparison's SQLite store if that does not exist yet, unless another
    comparison holds the store's lock (that one makes it) or the folder cannot be used (the comparison says why)."""
    global _connections
    database = _sqlite_database(tracking_uri)
    _remove_leftovers(database)
    lock, store, made = _lock_new_store(database)
    requests = os.pipe()
    replies = os.pipe()
    descriptors = {
        "requests": requests[0],
        "replies": replies[1],
        "new_store": store,
        "lock": lock.fileno() if lock is not None else None,
    }
    env = dict(os.environ, **({PREPARED_STORE_VARIABLE: store} if store is not None else {}))
    # The process holds the lock (its copy of the descriptor) until the store is made: opening it waits for that.
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, json.dumps(descriptors)],
        env=env,
        pass_fds=[fd for fd in descriptors.values() if isinstance(fd, int)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    for fd in (requests[0], replies[1]):
        os.close(fd)
    if lock is not None:
        lock.close()
    _connections = (Connection(requests[1], readable=False), Connection(replies[0], writable=False))
    return TrackingProcess(process, store, database, made)


def _sqlite_database(tracking_uri: str | None) -> Path | None:
    """The database file a comparison tracked to ``tracking_uri`` uses when that is a SQLite store (the rule of
    `initlab.tracking.store.resolve_tracking_uri`); ``None`` for any other store."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return default_database()
    return sqlite_database(uri)


def _remove_leftovers(database: Path | None) -> None:
    """Removes the new stores (``.<name>.<pid>.new``, with ``.partial`` and SQLite's ``-journal``) that the tracking
    processes of commands killed meanwhile (SIGTERM, kill -9) left beside ``database``."""
    if database is None or not database.parent.is_dir():
        return
    for leftover in database.parent.glob(f".{glob.escape(database.name)}.*.new*"):
        pid = leftover.name[len(database.name) + 2 :].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _lock_new_store(database: Path | None):
    """``(lock file, name to make the store under, what was made for it)`` when ``database`` does not exist yet and
    its lock (``<database>.lock``) is free; ``(None, None, ())`` otherwise. Made: the default store's folder and the
    lock file, where they did not exist."""
    if database is None or database.exists() or database.name in ("", ".", ".."):
        return None, None, ()
    made = []
    try:
        if database == default_database() and not database.parent.exists():
            database.parent.mkdir()
            made.append(database.parent)
        lock_path = database.with_suffix(".lock")
        if not lock_path.exists():
            made.insert(0, lock_path)
        lock = open(lock_path, "a")
    except OSError:  # the comparison reports what is wrong with the folder
        return None, None, ()
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return None, None, ()
    if not holds_lock_file(lock):  # another command's, removed meanwhile: that command's comparison was refused
        lock.close()
        return None, None, ()
    return lock, str(database.parent / f".{database.name}.{os.getpid()}.new"), tuple(made)


def _remove_lock_file(database: Path) -> None:
    """Removes the lock file of ``database``, a store that was not made, if no other comparison holds it (nor waits:
    they check `holds_lock_file` once they hold it) and the store still does not exist."""
    path = database.with_suffix(".lock")
    try:
        lock = open(path, "a")
    except OSError:
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another comparison opens the store now
            return
        if holds_lock_file(lock) and not database.exists():
            path.unlink()


class RemoteTracker(TrackerBase):
    """A `ComparisonTracker` in the tracking process (`serve`): every MLflow request goes there and is answered
    in order; records are staged here (`stage`). An error there comes back as the same
    `TrackingUnavailableError`; a tracking process that ended is a `ConnectionError`, which `lost` makes a
    `TrackingLostError` like any store failure.

    >>> requests, replies = take_tracking_process()                                          # doctest: +SKIP
    >>> tracker = RemoteTracker(requests, replies, "sqlite:///tracking/mlflow.db", "nielsen", "ab12")  # doctest: +SKIP
    >>> tracker.start_parent({"epochs": 30}, resume=False)                                   # doctest: +SKIP
    """

    def __init__(self, requests: Connection, replies: Connection, uri: str, experiment: str, spec_hash: str):
        self.uri, self.spec_hash, self.parent_id = uri, spec_hash, None
        self._requests, self._replies = requests, replies
        try:
            self.experiment_id = self._call("open", uri, experiment, spec_hash)
        except ConnectionError as e:
            raise TrackingUnavailableError(f"cannot use the MLflow store {uri}: {e}") from None

    def _call(self, name: str, *args, **kwargs):
        try:
            self._requests.send((name, args, kwargs))
            ok, value, self.parent_id = self._replies.recv()
        except (EOFError, OSError) as e:
            raise ConnectionError(f"the MLflow tracking process ended ({type(e).__name__}: {one_line(e)})") from None
        if not ok:
            raise value
        return value

    def __getattr__(self, name: str) -> Callable:
        """The `ComparisonTracker` request ``name``, made in the tracking process."""
        if name.startswith("_") or not callable(getattr(ComparisonTracker, name, None)):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return functools.partial(self._call, name)

    def close(self) -> None:
        """Ends the tracking process (it exits when its requests end)."""
        self._requests.close()
        self._replies.close()


def serve(requests: int, replies: int, new_store: str | None = None, lock: int | None = None) -> None:
    """The tracking process: answers `RemoteTracker`'s requests (read from the pipe ``requests``, answered on the pipe
    ``replies``, file descriptors) until they end; `start_tracking_process` runs this in a process of its own.

    It imports MLflow at once, then, with ``new_store``, makes an empty SQLite store in that file (holding the store's
    ``lock``, a file descriptor, until it is made; `initlab.tracking.store.adopt_prepared_store` renames it into
    place). The first request opens the `ComparisonTracker` (``"open"``), every other one calls its method of that
    name; each reply is ``(ok, result or error, parent run id)``. Store errors come back as `ComparisonTracker.lost`
    makes them. Ctrl-C and SIGTERM are the command's to handle (it asks for the runs to be marked): this process
    ignores them, ends quietly when the command ends however it ends (its pipes close; a command killed while this
    process made its store: the store is removed), and runs niced like the command's other background threads
    (`BACKGROUND_NICENESS`).
    """
    for signum in (signal.SIGINT, signal.SIGTERM):  # sent to the command's process group: the command handles them
        signal.signal(signum, signal.SIG_IGN)
    command = os.getppid()
    with contextlib.suppress(OSError):
        os.nice(BACKGROUND_NICENESS)
    quiet_store_logging()
    from mlflow.tracking import MlflowClient

    if new_store is not None:
        try:
            if os.getppid() == command:  # not for a command killed while MLflow loaded
                MlflowClient(f"sqlite:///{new_store}.partial").search_experiments()
                os.replace(new_store + ".partial", new_store)
        except Exception:  # nothing adopted: opening the store (the first request) makes it or says what is wrong
            pass
        finally:
            os.close(lock)
        if os.getppid() != command:  # the command was killed: nobody adopts the store
            for leftover in Path(new_store).parent.glob(glob.escape(Path(new_store).name) + "*"):
                leftover.unlink(missing_ok=True)
            return
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (what opening a SQLite store needs, loaded now)

    with http_limits():
        _answer(Connection(requests, writable=False), Connection(replies, readable=False))


def _answer(requests: Connection, replies: Connection) -> None:
    """`serve`'s loop: each request answered in turn, until the requests end."""
    tracker = None
    while True:
        try:
            name, args, kwargs = requests.recv()
        except (EOFError, OSError):  # the command ended (or was killed): so does this process
            return
        try:
            if name == "open":
                tracker = ComparisonTracker(*args)
                result = tracker.experiment_id
            else:
                result = getattr(tracker, name)(*args, **kwargs)
            reply = (True, result)
        except TrackingUnavailableError as e:
            reply = (False, e)
        except Exception as e:  # sent as an error that unpickles anywhere
            if tracker is not None and is_tracking_error(e):
                reply = (False, tracker.lost(e))
            else:
                reply = (
                    False,
                    RuntimeError(f"in the MLflow tracking process, {name} raised {type(e).__name__}: {one_line(e)}"),
                )
        try:
            replies.send((*reply, tracker.parent_id if tracker is not None else None))
        except OSError:  # the command was killed (kill -9) while this request was answered: nobody to tell
            return
