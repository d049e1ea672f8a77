"""MLflow tracking: where runs go, and how a comparison is laid out in MLflow.

Layout: one experiment per comparison name; one parent run per invocation
(tag ``initlab.role = comparison``, named ``<spec> YYYY-MM-DD HH:MM``, its
description the summary table); one nested child run per (scheme, seed)
(tag ``mlflow.parentRunId``), all children with the same param and metric
names so that the MLflow UI's charts line them up. Per-epoch metrics use
``step`` = epoch number (1-based); each child also holds ``final_val_accuracy``
and ``best_val_accuracy``; the diagnostics of the untrained model
(`keras_initlab.diagnostics`) are logged at step 0 as
``init/layer<depth>/<metric>``, with their table and activation histograms as
artifacts under ``init/``. The experiment carries a saved chart view
(`view_state`, `ui_url`): the runs grouped by scheme, the learning curves first.

Tracking URI: the ``uri`` argument, else ``$MLFLOW_TRACKING_URI``, else a SQLite
store ``tracking/mlflow.db`` under the current directory (artifacts beside it in
``tracking/artifacts``). MLflow is imported here only, and only when used.

Training never waits for MLflow: `TrackingWriter` does every MLflow request of a
comparison on a thread of its own, in order, opening the store (seconds for a
new SQLite store: MLflow's schema migrations) while the first models train.
Under the ``initlab`` command the requests go one step further, to a *writer
process* that the command starts before TensorFlow loads (`serve`, `RemoteTracker`):
it imports MLflow on the core that TensorFlow's import leaves idle, and its
work never competes with training for the GIL. This module imports neither Keras
nor TensorFlow, so that process can load it alone.

Nothing is lost when the store stops answering. A finished child run is first a
*record* on local disk (a folder under `pending_root`: ``run.json`` with its
params, tags and metrics, ``artifacts/``), then written to MLflow; if MLflow
fails, the record stays and `ComparisonTracker.log_pending` writes it when the
comparison is resumed. Requests to a tracking server give up after `HTTP_LIMITS`
(seconds, not MLflow's minutes of retries), so a dead server is reported within
about half a minute.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from keras_initlab._version import __version__
from keras_initlab.checks import one_line
from keras_initlab_cli import PREPARED_STORE_VARIABLE, take_writer_process

if TYPE_CHECKING:
    import keras

STORE_DIR = "tracking"
ROLE_TAG = "initlab.role"
SPEC_HASH_TAG = "initlab.spec_hash"
RUN_KEY_TAG = "initlab.run_key"
FAILURE_TAG = "initlab.failure"
VERSION_TAG = "initlab.version"
DIAGNOSTICS_TAG = "initlab.diagnostics"
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
MAX_TAG_LENGTH = 4900
"""Tag values are cut to this length (older MLflow servers accept 5000 characters, MLflow 3 8000)."""


HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
"""MLflow's HTTP client settings during a comparison, unless the environment sets them: a refused
connection fails in ~3 s, a server that hangs in ~33 s (MLflow's defaults retry for minutes)."""


_STORE_FIX = (
    "Pass --tracking-uri (or set MLFLOW_TRACKING_URI) to sqlite:///<absolute path in a writable folder> "
    "or http://<host>:<port> of a running server (initlab serve)."
)


class TrackingUnavailableError(RuntimeError):
    """The tracking store cannot be used; the message names the URI (or path) and the fix."""


class TrackingLostError(TrackingUnavailableError):
    """The tracking store stopped answering during a comparison; finished runs wait as pending records."""


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/tracking/mlflow.db`` (folder created)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = Path.cwd() / STORE_DIR
    try:
        store.mkdir(exist_ok=True)
    except FileExistsError:
        raise TrackingUnavailableError(
            f"{store} is a file, not a folder: the default MLflow store goes there. "
            "Move the file away or pass --tracking-uri."
        ) from None
    except OSError as e:
        raise TrackingUnavailableError(
            f"cannot create {store} for the default MLflow store ({e.strerror}); "
            "run from a writable folder or pass --tracking-uri."
        ) from None
    return f"sqlite:///{store / 'mlflow.db'}"


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
    """Keeps MLflow's SQL layer from logging a store error's traceback: the comparison reports it itself, in one line."""
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def _refusal(uri: str, error: BaseException) -> TrackingUnavailableError | None:
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


def pending_root(uri: str) -> Path:
    """Where child runs are staged: ``pending/`` beside a SQLite store; for any other store
    ``$XDG_CACHE_HOME/keras-initlab/pending`` (default ``~/.cache``)."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).parent / "pending"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "keras-initlab" / "pending"


def _lock_file(uri: str):
    """``<database>.lock`` of a SQLite store, opened for appending (created, with its folder, if need be)."""
    database = Path(uri[len("sqlite:///"):])
    if database.name in ("", ".", ".."):
        raise TrackingUnavailableError(f"the MLflow store {uri} names no database file. {_STORE_FIX}")
    lock_path = database.with_suffix(".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        return open(lock_path, "a")
    except OSError as e:
        raise TrackingUnavailableError(
            f"cannot use the MLflow store {uri}: {lock_path.parent} is not a writable folder ({e.strerror}). "
            + _STORE_FIX
        ) from None


def _adopt_prepared_store(uri: str) -> None:
    """Renames the new, empty store that the ``initlab`` command made for this process while TensorFlow
    loaded (named by ``keras_initlab_cli.PREPARED_STORE_VARIABLE``) to the database of ``uri`` if that does
    not exist yet (called under `_store_lock`, which waits until the store is made)."""
    prepared = os.environ.pop(PREPARED_STORE_VARIABLE, None)
    if prepared is None or not uri.startswith("sqlite:///"):
        return
    database = Path(uri[len("sqlite:///"):])
    if Path(prepared).parent == database.parent and Path(prepared).is_file() and not database.exists():
        os.replace(prepared, database)


_SQLITE_HEADER = b"SQLite format 3\x00"


def check_writable(uri: str) -> None:
    """Fails fast, before any work, when the folder of a SQLite store or of the pending records
    (`pending_root`) cannot be written, or the store's file is not a SQLite database."""
    if uri.startswith("sqlite:///"):
        _lock_file(uri).close()
        database = Path(uri[len("sqlite:///"):])
        with contextlib.suppress(OSError), open(database, "rb") as file:
            header = file.read(len(_SQLITE_HEADER))
            if header and header != _SQLITE_HEADER:
                raise TrackingUnavailableError(
                    f"cannot use the MLflow store {uri}: {database} is not a SQLite database. {_STORE_FIX}"
                )
    try:
        pending_root(uri).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrackingUnavailableError(
            f"cannot write the records of child runs to {pending_root(uri)} ({e.strerror}); "
            "set XDG_CACHE_HOME to a writable folder."
        ) from None


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock on ``<database>.lock`` while a SQLite store is opened (and perhaps created):
    two comparisons starting on a new store would otherwise both run MLflow's schema migrations."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    with _lock_file(uri) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


UI_PORT = 5000
"""The port of the MLflow UI that `ui_command` starts and `ui_url` points at (``mlflow ui``'s default)."""

LEARNING_CURVES = ("val_accuracy", "val_loss", "train_loss")
"""The charts a comparison's view opens with, in this order."""


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on ``uri`` (for a server: its address)."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri} --port {UI_PORT}"


def ui_url(uri: str, experiment_id: str, parent_id: str) -> str:
    """The address of one comparison's chart view in the MLflow UI (`view_state`, saved under the parent's id):
    the runs page of the experiment, model-training workflow, chart mode. On the server of ``uri``; for any
    other store, on the UI that `ui_command` starts. An MLflow that does not know shared views opens the runs page.

    >>> ui_url("sqlite:///tracking/mlflow.db", "1", "ab12")
    'http://127.0.0.1:5000/#/experiments/1/runs?viewStateShareKey=ab12&compareRunsMode=CHART&workflowType=machine_learning'
    """
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{UI_PORT}"
    return (f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={parent_id}"
            "&compareRunsMode=CHART&workflowType=machine_learning")


def view_state(parent_id: str, runs: int) -> dict:
    """One comparison's chart view, as the MLflow UI restores it from the experiment tag
    ``mlflow.sharedViewState.<key>`` (its "share view" feature; plain JSON, the form every MLflow
    that shares views reads).

    The view holds the child runs of ``parent_id`` (its search filter), grouped by the param
    ``scheme`` (per scheme the mean over seeds, with the min-max band), and opens with line
    charts of `LEARNING_CURVES` against the epoch (``step``) in a section marked as ordered, so
    that the UI adds the charts of the other metrics after them rather than in alphabetical order.
    ``runs`` is how many runs the charts show at most.
    """
    section = "initlab-learning-curves"
    charts = [
        {
            "uuid": f"initlab-{metric}", "type": "LINE", "metricSectionId": section, "displayName": metric,
            "metricKey": metric, "selectedMetricKeys": [metric], "xAxisKey": "step", "useGlobalXaxisKey": False,
            "selectedXAxisMetricKey": "", "xAxisScaleType": "linear", "scaleType": "linear", "yAxisKey": "metric",
            "yAxisExpressions": [], "lineSmoothness": 0, "useGlobalLineSmoothing": False, "ignoreOutliers": False,
            "range": {}, "runsCountToCompare": runs, "isGenerated": False, "deleted": False,
        }
        for metric in LEARNING_CURVES
    ]
    return {
        "searchFilter": f"tags.`{PARENT_TAG}` = '{parent_id}'",
        "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "param", "groupByData": "scheme"}]},
        "useGroupedValuesInCharts": True,
        "compareRunCharts": charts,
        "compareRunSections": [
            {"uuid": section, "name": "Learning curves", "display": True, "isReordered": True},
            {"uuid": "initlab-system", "name": "System metrics", "display": True, "isReordered": False},
        ],
        "isAccordionReordered": True,
        "hideEmptyCharts": True,
    }


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fails fast, before any training, when an HTTP tracking server does not answer its health check."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status != 200:
                raise TrackingUnavailableError(f"MLflow tracking server {uri} answered HTTP {response.status}.")
    except (urllib.error.URLError, OSError) as e:
        raise TrackingUnavailableError(
            f"MLflow tracking server {uri} is unreachable ({e}). Start one (initlab serve) or unset "
            "MLFLOW_TRACKING_URI to use the local SQLite store."
        ) from None


def _artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store go beside the database; a server decides for itself."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "artifacts").resolve().as_uri()
    return None


def initializer_param(init: keras.initializers.Initializer) -> str:
    """``ClassName {config JSON}``: how an initializer is recorded as a run parameter."""
    return f"{type(init).__name__} {json.dumps(init.get_config(), sort_keys=True)}"


def _now_ms() -> int:
    return int(time.time() * 1000)


class ChildRun:
    """One child run as it trains: everything it will hold, in memory until it ends.

    `add_initial_diagnostics` and `add_lsuv` add the step-0 metrics and the files
    ``init/diagnostics.md``, ``init/activations.png``, ``init/lsuv.md``; the epochs'
    metrics arrive through `add_epoch` (from `keras_initlab.comparison.EpochMetricsLogger`);
    `finish` ends it (status, reason, the trained model, the summary metrics).
    `ComparisonTracker.stage` then makes it a record on disk and
    `ComparisonTracker.write_record` writes that to MLflow.
    """

    def __init__(self, run_key: str, params: Mapping[str, object]):
        self.run_key = run_key
        self.params = {k: str(v) for k, v in params.items()}
        self.tags: dict[str, str] = {}
        self.metrics: list[tuple[str, float, int, int]] = []  # (key, value, step, time in ms)
        self.files: dict[str, bytes] = {}  # artifact path -> content
        self.model: keras.Model | None = None
        self.status = "RUNNING"
        self.start_time, self.end_time = _now_ms(), None

    def curve(self, key: str) -> list[float]:
        """The values of metric ``key`` so far, ordered by step."""
        return [value for _, value in sorted((step, value) for k, value, step, _ in self.metrics if k == key)]

    def add_epoch(self, step: int, logs: Mapping[str, float]) -> None:
        """One epoch's metrics (``{name: value}``) at ``step``."""
        now = _now_ms()
        self.metrics += [(key, float(value), step, now) for key, value in logs.items()]

    def add_initial_diagnostics(self, table, histograms: bytes | None = None) -> None:
        """A `keras_initlab.diagnostics.DiagnosticsTable` at step 0 (``init/layer<depth>/<metric>``), the
        table as ``init/diagnostics.md`` and ``histograms`` (a PNG of the activation histograms), if any,
        as ``init/activations.png``."""
        now = _now_ms()
        self.metrics += [(key, value, 0, now) for key, value in table.metrics().items()]
        self.files["init/diagnostics.md"] = (table.to_markdown() + "\n").encode()
        if histograms is not None:
            self.files["init/activations.png"] = histograms

    def add_lsuv(self, steps) -> None:
        """What `keras_initlab.lsuv` did, at step 0: ``lsuv/layer<depth>/`` ``iterations``, ``std_before``,
        ``std_after`` (depth = position among the Dense/Conv layers, as in the diagnostics) and the table
        as ``init/lsuv.md``."""
        now = _now_ms()
        lines = ["| # | layer | iterations | std before | std after | dead |", "|---|---|---|---|---|---|"]
        for depth, step in enumerate(steps, start=1):
            for key in ("iterations", "std_before", "std_after"):
                self.metrics.append((f"lsuv/layer{depth}/{key}", float(getattr(step, key)), 0, now))
            lines.append(f"| {depth} | {step.layer} | {step.iterations} | {step.std_before:.4g} | "
                         f"{step.std_after:.4g} | {'yes' if step.dead else ''} |")
        self.files["init/lsuv.md"] = ("\n".join(lines) + "\n").encode()

    def skip_initial_diagnostics(self, reason: str) -> None:
        """Records why the run has no initial diagnostics (the ``initlab.diagnostics`` tag)."""
        self.tags[DIAGNOSTICS_TAG] = reason[:MAX_TAG_LENGTH]

    def finish(self, model: keras.Model | None, status: str = "FINISHED", reason: str | None = None) -> None:
        """Ends the run: ``status`` (FINISHED, FAILED, KILLED), ``reason`` as the ``initlab.failure`` tag,
        ``model`` to save as ``model/model.keras``. A FINISHED run gets its summary metrics at the step of
        its last epoch: ``final_val_accuracy`` (the last ``val_accuracy``) and ``best_val_accuracy`` (the highest)."""
        self.status, self.model, self.end_time = status, model, _now_ms()
        if reason is not None:
            self.tags[FAILURE_TAG] = reason[:MAX_TAG_LENGTH]
        curve = sorted((step, value) for key, value, step, _ in self.metrics if key == "val_accuracy")
        if status == "FINISHED" and curve:
            last_step, last_value = curve[-1]
            self.metrics.append(("final_val_accuracy", last_value, last_step, self.end_time))
            self.metrics.append(("best_val_accuracy", max(value for _, value in curve), last_step, self.end_time))


class _TrackerBase:
    """What a comparison's tracker does on this machine, without MLflow: where its records go (`pending_dir`),
    a child run made a record (`stage`), the error that a failed store becomes (`lost`)."""

    uri: str
    parent_id: str | None

    @property
    def pending_dir(self) -> Path:
        """The records of this parent's child runs that are not (yet) in MLflow."""
        return pending_root(self.uri) / self.parent_id

    def stage(self, child: ChildRun) -> Path:
        """``child`` (ended) as a record on disk: its files, its model as ``model/model.keras`` and, last,
        ``run.json``; returns the record's folder. A record without ``run.json`` is never read."""
        stage = self.pending_dir / child.run_key.replace("/", "__")
        shutil.rmtree(stage, ignore_errors=True)
        for name, content in child.files.items():
            (stage / "artifacts" / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / "artifacts" / name).write_bytes(content)
        if child.model is not None:
            (stage / "artifacts" / "model").mkdir(parents=True, exist_ok=True)
            child.model.save(stage / "artifacts" / "model" / "model.keras")
        stage.mkdir(parents=True, exist_ok=True)
        record = {"run_key": child.run_key, "status": child.status, "params": child.params, "tags": child.tags,
                  "metrics": child.metrics, "start_time": child.start_time, "end_time": child.end_time}
        # Written whole or not at all: a record cut short by a full disk or a crash is never read.
        partial = stage / "run.json.partial"
        with open(partial, "w") as file:
            json.dump(record, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, stage / "run.json")
        return stage

    def lost(self, error: BaseException) -> TrackingUnavailableError:
        """The error to raise when MLflow fails mid-comparison: what happened, where the runs are, what to do.

        A refused login or permission is not a store that stopped: a `TrackingUnavailableError` says so.
        """
        refusal = _refusal(self.uri, error)
        if refusal is not None:
            return refusal
        where = self.pending_dir if self.parent_id else pending_root(self.uri)
        return TrackingLostError(
            f"the MLflow store {self.uri} stopped working ({type(error).__name__}: {one_line(error)}). "
            f"Runs that finished are kept, in MLflow or as pending records in {where}; "
            "when the store works again, rerun with --resume."
        )


class ComparisonTracker(_TrackerBase):
    """The MLflow side of one comparison: its experiment, parent run and child runs.

    Example:

    >>> tracker = ComparisonTracker("sqlite:///tracking/mlflow.db", "nielsen", spec_hash="ab12")
    >>> parent = tracker.start_parent(params={"epochs": 30}, resume=False)

    Raises:
        TrackingUnavailableError: when the store cannot be opened (unknown URI scheme, a folder that
            cannot be written, a server that does not answer); the message names the URI. That the
            records' folder can be written is `check_writable`'s to say, before any work.
    """

    def __init__(self, uri: str, experiment: str, spec_hash: str):
        from mlflow.tracking import MlflowClient

        self.uri, self.spec_hash = uri, spec_hash
        try:
            with _store_lock(uri):
                _adopt_prepared_store(uri)
                self.client = MlflowClient(tracking_uri=uri)
                self.experiment_id = self._experiment(experiment)
        except TrackingUnavailableError:
            raise
        except Exception as e:  # MLflow's errors, the OS's, SQLAlchemy's (a file that is not an MLflow store)
            raise _refusal(uri, e) or TrackingUnavailableError(
                f"cannot use the MLflow store {uri}: {one_line(e)}. {_STORE_FIX}"
            ) from None
        self.parent_id: str | None = None

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(name, artifact_location=_artifact_root(self.uri))
            except MlflowException as e:  # created by another comparison in the meantime
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                found = self.client.get_experiment_by_name(name)
        if found.lifecycle_stage == "deleted":
            raise TrackingUnavailableError(
                f"the MLflow experiment {name!r} in {self.uri} is deleted; restore it (mlflow experiments restore) "
                "or pass --experiment with another name."
            )
        return found.experiment_id

    # -- parent run --------------------------------------------------------------------

    def start_parent(self, params: Mapping[str, object], resume: bool, run_name: str | None = None) -> dict[str, str]:
        """Starts the parent run (named ``run_name``), or with ``resume`` re-opens the latest one of the
        same spec hash (its name kept).

        Returns ``{run_key: run_id}`` of the children already FINISHED under it
        (always empty for a new parent). Unfinished children of a resumed parent
        are deleted, so that nothing is logged twice.
        """
        from mlflow.entities import Param

        if resume:
            previous = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{ROLE_TAG}` = 'comparison' and tags.`{SPEC_HASH_TAG}` = '{self.spec_hash}'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            if previous:
                self.parent_id = previous[0].info.run_id
                self.client.update_run(self.parent_id, status="RUNNING")
                finished = {}
                for child in self.children():
                    if child.info.status == "FINISHED":
                        finished[child.data.tags[RUN_KEY_TAG]] = child.info.run_id
                    else:
                        self.client.delete_run(child.info.run_id)
                return finished
        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name,
            tags={ROLE_TAG: "comparison", SPEC_HASH_TAG: self.spec_hash, VERSION_TAG: __version__},
        )
        self.parent_id = run.info.run_id
        self.client.log_batch(self.parent_id, params=[Param(k, str(v)) for k, v in params.items()])
        return {}

    def join_parent(self, parent_id: str, run_keys: Sequence[str]) -> None:
        """Writes from now on child runs of the existing parent ``parent_id`` (a unit of work on a cluster's worker);
        child runs of ``run_keys`` already under it (left by an attempt that died while writing) are deleted, so that
        a retried unit leaves each run once."""
        self.parent_id = parent_id
        for child in self.children():
            if child.data.tags.get(RUN_KEY_TAG) in run_keys:
                self.client.delete_run(child.info.run_id)

    def children(self) -> list:
        """The parent's live (not deleted) child runs, every page of them."""
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_id}'", page_token=token
            )
            runs += page
            token = page.token
            if not token:
                return runs

    def finish_parent(self, status: str) -> None:
        self.client.set_terminated(self.parent_id, status)

    def describe_parent(self, text: str) -> None:
        """``text`` (Markdown) as the parent run's description, shown on its page (``mlflow.note.content``)."""
        self.client.set_tag(self.parent_id, NOTE_TAG, text[:MAX_TAG_LENGTH])

    def log_parent_artifacts(self, files: Mapping[str, str | bytes]) -> None:
        """Files (text or bytes), by file name, as parent-run artifacts."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                (Path(tmp) / name).write_bytes(content.encode() if isinstance(content, str) else content)
            self.client.log_artifacts(self.parent_id, tmp)

    def save_view(self, runs: int) -> None:
        """The parent's chart view (`view_state`) as the experiment's shared view named by the parent's id
        (the tag ``mlflow.sharedViewState.<parent id>``), which `ui_url` opens."""
        state = view_state(self.parent_id, runs)
        self.client.set_experiment_tag(self.experiment_id, f"{VIEW_TAG_PREFIX}{self.parent_id}", json.dumps(state))

    # -- child runs --------------------------------------------------------------------

    def write_record(self, stage: Path) -> str:
        """Writes the record in ``stage`` (`stage`) to MLflow as a child run of the parent: created with its
        start time, its artifacts, its params, tags and metrics in one batch, then marked with its status.
        Removes the record once MLflow has everything; returns the run id."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        saved = json.loads((stage / "run.json").read_text())
        tags = {PARENT_TAG: self.parent_id, RUN_KEY_TAG: saved["run_key"], SPEC_HASH_TAG: self.spec_hash,
                VERSION_TAG: __version__}
        # One writer at a time on a SQLite store: the workers of a local Ray instance write concurrently, and SQLite
        # would answer some of them "database is locked".
        with _store_lock(self.uri):
            info = self.client.create_run(
                self.experiment_id, start_time=saved.get("start_time"), run_name=saved["run_key"], tags=tags
            ).info
            run_id = info.run_id
            if (stage / "artifacts").is_dir():  # the store of the run just created (the client would read it again)
                repository = get_artifact_repository(info.artifact_uri, tracking_uri=self.uri)
                repository.log_artifacts(str(stage / "artifacts"))
            self.client.log_batch(  # MLflow's client splits a batch into requests of its size limits
                run_id,
                metrics=[Metric(key, value, timestamp, step) for key, value, step, timestamp in saved["metrics"]],
                params=[Param(k, v) for k, v in saved["params"].items()],
                tags=[RunTag(k, v) for k, v in saved["tags"].items()],
            )
            self.client.set_terminated(run_id, saved["status"], end_time=saved.get("end_time"))
        shutil.rmtree(stage)
        with contextlib.suppress(OSError):  # no empty folder left behind (the shared pending/ root stays)
            self.pending_dir.rmdir()
        return run_id

    def log_pending(self, finished: Mapping[str, str]) -> dict[str, str]:
        """Writes the pending records of the parent (runs that finished while MLflow did not answer)
        as child runs, skipping run keys in ``finished``; returns ``{run_key: run_id}`` written.

        Records of runs that did not finish (no ``run.json``, or a failed run) are removed: those runs train again.
        """
        written = {}
        for stage in sorted(self.pending_dir.iterdir()) if self.pending_dir.is_dir() else []:
            try:
                saved = json.loads((stage / "run.json").read_text())
            except (OSError, ValueError):  # no record: the run did not finish, and trains again
                saved = {"status": None}
            if saved["status"] == "FINISHED" and saved["run_key"] not in finished:
                written[saved["run_key"]] = self.write_record(stage)  # removes the stage
            elif stage.is_dir():
                shutil.rmtree(stage)
            else:  # a stray file
                stage.unlink()
        with contextlib.suppress(OSError):
            self.pending_dir.rmdir()
        return written

    def kill_running_children(self, reason: str, status: str = "KILLED") -> None:
        """Marks every child still RUNNING ``status`` (KILLED after an interrupt) with ``reason``."""
        for child in self.children():
            if child.info.status == "RUNNING":
                self.client.set_tag(child.info.run_id, FAILURE_TAG, reason[:MAX_TAG_LENGTH])
                self.client.set_terminated(child.info.run_id, status)

    def metric_histories(self, runs: Mapping[str, str], key: str) -> dict[str, list[float]]:
        """``{name: values of key ordered by step}`` of the runs ``{name: run id}``."""
        return {
            name: [m.value for m in sorted(self.client.get_metric_history(run_id, key), key=lambda m: m.step)]
            for name, run_id in runs.items()
        }



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


class TrackingWriter:
    """A comparison's MLflow requests, made in order on a thread of their own: training never waits for MLflow.

    The first job opens the store (`ComparisonTracker`: importing MLflow and, for a new
    SQLite store, MLflow's schema migrations, seconds) while the first models are built
    and train; in a writer process that the ``initlab`` command started, if there is one
    (`RemoteTracker`: the same requests, answered there). `submit` queues ``job(tracker)``;
    `write` queues ended child runs, each
    made a record on disk (`ComparisonTracker.stage`), then a child run in MLflow
    (`ComparisonTracker.write_record`). After the store fails, no request goes to MLflow
    any more (records still go to disk): `raise_if_lost` raises that error in the
    caller's thread without waiting (a comparison asks after every epoch), `wait` waits
    for every job and raises it. An error that is not the store's (a model that cannot
    be saved) is raised by `check` (between groups of runs) and `wait`; the writer goes on.

    >>> writer = TrackingWriter("sqlite:///tracking/mlflow.db", "nielsen", spec_hash="ab12")  # doctest: +SKIP
    >>> writer.submit(lambda tracker: tracker.start_parent({}, resume=False)).result()         # doctest: +SKIP
    >>> writer.write(children); writer.wait()                                                  # doctest: +SKIP
    """

    def __init__(self, uri: str, experiment: str, spec_hash: str):
        self.uri = uri
        self.tracker: ComparisonTracker | None = None
        self.lost: TrackingUnavailableError | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="initlab-mlflow", initializer=lower_thread_priority)
        self._jobs: list[Future] = [self._pool.submit(self._open, experiment, spec_hash)]

    def _open(self, experiment: str, spec_hash: str) -> None:
        process = take_writer_process()
        try:
            if process is None:
                self.tracker = ComparisonTracker(self.uri, experiment, spec_hash)
            else:
                self.tracker = RemoteTracker(*process, self.uri, experiment, spec_hash)
        except TrackingUnavailableError as e:
            self.lost = e

    def _guarded(self, request: Callable[[], object]) -> object:
        """``request()``; a store error is kept as `lost` (and ``None`` returned), any other raised."""
        try:
            return request()
        except Exception as e:
            if not (isinstance(e, TrackingUnavailableError) or is_tracking_error(e)):
                raise
            if self.lost is None:
                self.lost = e if isinstance(e, TrackingUnavailableError) else self.tracker.lost(e)
            return None

    def submit(self, job: Callable[[ComparisonTracker], object]) -> Future:
        """Queues ``job(tracker)``; skipped (the future's result ``None``) once the store failed."""

        def run():
            if self.lost is None:
                return self._guarded(lambda: job(self.tracker))
            return None

        return self._queue(run)

    def write(self, children: Sequence[ChildRun]) -> None:
        """Queues ended child runs: each becomes a record on disk, then (while the store works) a child run."""

        def run():
            if self.tracker is None:  # the store never opened: there is no parent to keep records for
                return
            for stage in [self._guarded(lambda c=child: self.tracker.stage(c)) for child in children]:
                if stage is not None and self.lost is None:
                    self._guarded(lambda s=stage: self.tracker.write_record(s))

        self._queue(run)

    def _queue(self, job: Callable[[], object]) -> Future:
        future = self._pool.submit(job)
        self._jobs.append(future)
        return future

    def raise_if_lost(self) -> None:
        """Raises the store's error if it failed by now."""
        if self.lost is not None:
            raise self.lost

    def check(self) -> None:
        """Raises the store's error, or a job's, if one happened by now; never waits."""
        self.raise_if_lost()
        for future in [f for f in self._jobs if f.done()]:
            self._jobs.remove(future)
            future.result()

    def wait(self) -> ComparisonTracker:
        """Waits for every job queued so far; raises as `check`. Returns the open tracker."""
        while self._jobs:
            self._jobs.pop(0).result()
        self.check()
        return self.tracker

    def close(self) -> None:
        """Waits for the jobs queued so far and accepts no more (after the store failed, what remains is
        records going to disk); a writer process is then told to end."""
        self._pool.shutdown(wait=True)
        if isinstance(self.tracker, RemoteTracker):
            self.tracker.close()


class RemoteTracker(_TrackerBase):
    """A `ComparisonTracker` in the writer process (`serve`): every MLflow request goes there and is answered
    in order; records are staged here (`stage`). An error there comes back as the same
    `TrackingUnavailableError`; a writer process that ended is a `ConnectionError`, which `lost` makes a
    `TrackingLostError` like any store failure.

    >>> requests, replies = take_writer_process()                                            # doctest: +SKIP
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
            raise ConnectionError(f"the MLflow writer process ended ({type(e).__name__}: {one_line(e)})") from None
        if not ok:
            raise value
        return value

    def __getattr__(self, name: str) -> Callable:
        """The `ComparisonTracker` request ``name``, made in the writer process."""
        if name.startswith("_") or not callable(getattr(ComparisonTracker, name, None)):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return functools.partial(self._call, name)

    def close(self) -> None:
        """Ends the writer process (it exits when its requests end)."""
        self._requests.close()
        self._replies.close()


def serve(requests: int, replies: int, new_store: str | None = None, lock: int | None = None) -> None:
    """The writer process: answers `RemoteTracker`'s requests (read from the pipe ``requests``, answered on the pipe
    ``replies``, file descriptors) until they end; the ``initlab`` command runs this in a process of its own, started
    before TensorFlow loads (`keras_initlab_cli`).

    It imports MLflow at once, then, with ``new_store``, makes an empty SQLite store in that file (holding the store's
    ``lock``, a file descriptor, until it is made; `_adopt_prepared_store` renames it into place). The first request
    opens the `ComparisonTracker` (``"open"``), every other one calls its method of that name; each reply is
    ``(ok, result or error, parent run id)``. Store errors come back as `ComparisonTracker.lost` makes them. Ctrl-C is
    the command's to handle (it asks for the runs to be marked): this process ignores it, and runs niced like the
    command's other background threads (`BACKGROUND_NICENESS`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(BACKGROUND_NICENESS)
    quiet_store_logging()
    from mlflow.tracking import MlflowClient

    if new_store is not None:
        try:
            MlflowClient(f"sqlite:///{new_store}.partial").search_experiments()
            os.replace(new_store + ".partial", new_store)
        except Exception:  # nothing adopted: opening the store (the first request) makes it or says what is wrong
            pass
        finally:
            os.close(lock)
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (what opening a SQLite store needs, loaded now)

    with http_limits():
        _answer(Connection(requests, writable=False), Connection(replies, readable=False))


def _answer(requests: Connection, replies: Connection) -> None:
    """`serve`'s loop: each request answered in turn, until the requests end."""
    tracker = None
    while True:
        try:
            name, args, kwargs = requests.recv()
        except EOFError:
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
                reply = (False, RuntimeError(f"in the MLflow writer process, {name} raised {type(e).__name__}: "
                                             f"{one_line(e)}"))
        replies.send((*reply, tracker.parent_id if tracker is not None else None))
