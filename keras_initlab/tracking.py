"""MLflow tracking: where runs go, and how a comparison is laid out in MLflow.

Layout: one experiment per comparison name; one parent run per invocation
(tag ``initlab.role = comparison``); one nested child run per (scheme, seed)
(tag ``mlflow.parentRunId``), all children with the same param and metric
names so that the MLflow UI's compare view lines them up. Per-epoch metrics use
``step`` = epoch number (1-based) and are written in one batch per run; the
diagnostics of the untrained model (`keras_initlab.diagnostics`) are logged
at step 0 as ``init/layer<depth>/<metric>``, with their table and activation
histograms as artifacts under ``init/``.

Tracking URI: the ``uri`` argument, else ``$MLFLOW_TRACKING_URI``, else a SQLite
store ``tracking/mlflow.db`` under the current directory (artifacts beside it in
``tracking/artifacts``). MLflow is imported here only, and only when used.

Nothing is lost when the store stops answering. A child run's artifacts, params
and metrics are staged in a local folder (`pending_root`) and written to MLflow
when the run ends; if MLflow fails then, the folder stays as a *pending record*
and `ComparisonTracker.log_pending` writes it when the comparison is resumed.
Requests to a tracking server give up after `HTTP_LIMITS` (seconds, not MLflow's
minutes of retries), so a dead server is reported within about half a minute.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import keras

from keras_initlab._version import __version__
from keras_initlab.checks import one_line
from keras_initlab.spec import MAX_RUNS

STORE_DIR = "tracking"
ROLE_TAG = "initlab.role"
SPEC_HASH_TAG = "initlab.spec_hash"
RUN_KEY_TAG = "initlab.run_key"
FAILURE_TAG = "initlab.failure"
VERSION_TAG = "initlab.version"
DIAGNOSTICS_TAG = "initlab.diagnostics"
PARENT_TAG = "mlflow.parentRunId"


HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
"""MLflow's HTTP client settings during a comparison, unless the environment sets them: a refused
connection fails in ~3 s, a server that hangs in ~33 s (MLflow's defaults retry for minutes)."""


_STORE_FIX = (
    "Pass --tracking-uri (or set MLFLOW_TRACKING_URI) to sqlite:///<absolute path in a writable folder> "
    "or http://<host>:<port> of a running server (tracking/serve.sh)."
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


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock on ``<database>.lock`` while a SQLite store is opened (and perhaps created):
    two comparisons starting on a new store would otherwise both run MLflow's schema migrations."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    database = Path(uri[len("sqlite:///"):])
    if database.name in ("", ".", ".."):
        raise TrackingUnavailableError(f"the MLflow store {uri} names no database file. {_STORE_FIX}")
    lock_path = database.with_suffix(".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "a")
    except OSError as e:
        raise TrackingUnavailableError(
            f"cannot use the MLflow store {uri}: {lock_path.parent} is not a writable folder ({e.strerror}). "
            + _STORE_FIX
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on ``uri`` (for a server: its address)."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri}"


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
            f"MLflow tracking server {uri} is unreachable ({e}). Start one (tracking/serve.sh) or unset "
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


class ChildRun:
    """One child run as it trains: its MLflow run id and everything it will hold, staged locally.

    ``stage`` is a folder of the pending records (`pending_root`): ``artifacts/`` holds
    the files to log (``init/diagnostics.md``, ``init/activations.png``,
    ``model/model.keras``) and ``run.json`` the run key, params, tags and metrics.
    `finish` makes the stage a complete record; `ComparisonTracker.write_child` writes it to
    MLflow and removes the folder.
    """

    def __init__(self, run_id: str, run_key: str, params: Mapping[str, object], stage: Path):
        self.run_id, self.run_key, self.stage = run_id, run_key, stage
        self.params = {k: str(v) for k, v in params.items()}
        self.tags: dict[str, str] = {}
        self.metrics: list[tuple[str, float, int, int]] = []  # (key, value, step, time in ms)
        self.status = "RUNNING"

    @property
    def artifacts(self) -> Path:
        return self.stage / "artifacts"

    def add_initial_diagnostics(self, table, figure) -> None:
        """A `keras_initlab.diagnostics.DiagnosticsTable` at step 0 (``init/layer<depth>/<metric>``), the
        table as ``init/diagnostics.md`` and ``figure`` (the activation histograms) as ``init/activations.png``."""
        now = int(time.time() * 1000)
        self.metrics += [(key, value, 0, now) for key, value in table.metrics().items()]
        (self.artifacts / "init").mkdir(parents=True, exist_ok=True)
        (self.artifacts / "init" / "diagnostics.md").write_text(table.to_markdown() + "\n")
        figure.savefig(self.artifacts / "init" / "activations.png")

    def add_lsuv(self, steps) -> None:
        """What `keras_initlab.lsuv` did, at step 0: ``lsuv/layer<depth>/`` ``iterations``, ``std_before``,
        ``std_after`` (depth = position among the Dense/Conv layers, as in the diagnostics) and the table
        as ``init/lsuv.md``."""
        now = int(time.time() * 1000)
        lines = ["| # | layer | iterations | std before | std after | dead |", "|---|---|---|---|---|---|"]
        for depth, step in enumerate(steps, start=1):
            for key in ("iterations", "std_before", "std_after"):
                self.metrics.append((f"lsuv/layer{depth}/{key}", float(getattr(step, key)), 0, now))
            lines.append(f"| {depth} | {step.layer} | {step.iterations} | {step.std_before:.4g} | "
                         f"{step.std_after:.4g} | {'yes' if step.dead else ''} |")
        (self.artifacts / "init").mkdir(parents=True, exist_ok=True)
        (self.artifacts / "init" / "lsuv.md").write_text("\n".join(lines) + "\n")

    def skip_initial_diagnostics(self, reason: str) -> None:
        """Records why the run has no initial diagnostics (the ``initlab.diagnostics`` tag)."""
        self.tags[DIAGNOSTICS_TAG] = reason[:4900]

    def finish(self, model: keras.Model | None, status: str = "FINISHED", reason: str | None = None) -> None:
        """Ends the run locally: ``status`` (FINISHED, FAILED, KILLED), ``reason`` as the ``initlab.failure``
        tag, the model as ``model/model.keras``, and ``run.json``: the stage is now a complete record."""
        self.status = status
        if reason is not None:
            self.tags[FAILURE_TAG] = reason[:4900]
        if model is not None:
            (self.artifacts / "model").mkdir(parents=True, exist_ok=True)
            model.save(self.artifacts / "model" / "model.keras")
        record = {"run_key": self.run_key, "status": status, "params": self.params, "tags": self.tags,
                  "metrics": self.metrics}
        # Written whole or not at all: a record cut short by a full disk or a crash is never read.
        partial = self.stage / "run.json.partial"
        with open(partial, "w") as file:
            json.dump(record, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, self.stage / "run.json")


class EpochMetricsLogger(keras.callbacks.Callback):
    """Keras callback adding a run's per-epoch logs to its `ChildRun` (written when the run ends).

    Epoch ``e`` (0-based in Keras) is logged with ``step = e + 1``.
    """

    def __init__(self, child: ChildRun):
        super().__init__()
        self.child = child

    def on_epoch_end(self, epoch, logs=None):
        now = int(time.time() * 1000)
        self.child.metrics += [(key, float(value), epoch + 1, now) for key, value in (logs or {}).items()]


class ComparisonTracker:
    """The MLflow side of one comparison: its experiment, parent run and child runs.

    Example:

    >>> tracker = ComparisonTracker("sqlite:///tracking/mlflow.db", "nielsen", spec_hash="ab12")
    >>> parent = tracker.start_parent(params={"epochs": 30}, resume=False)

    Raises:
        TrackingUnavailableError: when the store cannot be opened (unknown URI scheme, a folder that
            cannot be written, a server that does not answer); the message names the URI.
    """

    def __init__(self, uri: str, experiment: str, spec_hash: str):
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.uri, self.spec_hash = uri, spec_hash
        try:
            with _store_lock(uri):
                self.client = MlflowClient(tracking_uri=uri)
                self.experiment_id = self._experiment(experiment)
        except MlflowException as e:
            raise _refusal(uri, e) or TrackingUnavailableError(
                f"cannot use the MLflow store {uri}: {one_line(e)}. {_STORE_FIX}"
            ) from None
        except OSError as e:
            raise TrackingUnavailableError(f"cannot use the MLflow store {uri}: {one_line(e)}. {_STORE_FIX}") from None
        self.parent_id: str | None = None
        try:  # the stages of child runs must be writable before any run exists
            pending_root(uri).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingUnavailableError(
                f"cannot write the stages of child runs to {pending_root(uri)} ({e.strerror}); "
                "set XDG_CACHE_HOME to a writable folder."
            ) from None

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
            raise ValueError(f"MLflow experiment {name!r} is deleted; restore it or choose another name.")
        return found.experiment_id

    # -- parent run --------------------------------------------------------------------

    def start_parent(self, params: Mapping[str, object], resume: bool) -> dict[str, str]:
        """Starts the parent run, or with ``resume`` re-opens the latest one of the same spec hash.

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
            tags={ROLE_TAG: "comparison", SPEC_HASH_TAG: self.spec_hash, VERSION_TAG: __version__},
        )
        self.parent_id = run.info.run_id
        self.client.log_batch(self.parent_id, params=[Param(k, str(v)) for k, v in params.items()])
        return {}

    def children(self) -> list:
        """The parent's live (not deleted) child runs."""
        return self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_id}'", max_results=MAX_RUNS
        )

    def finish_parent(self, status: str) -> None:
        self.client.set_terminated(self.parent_id, status)

    def log_parent_artifacts(self, files: Mapping[str, str | bytes], figures: Mapping[str, object] = {}) -> None:
        """Text/bytes files and matplotlib figures, by file name, as parent-run artifacts."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                path = Path(tmp) / name
                path.write_bytes(content.encode() if isinstance(content, str) else content)
                self.client.log_artifact(self.parent_id, str(path))
            for name, figure in figures.items():
                path = Path(tmp) / name
                figure.savefig(path)
                self.client.log_artifact(self.parent_id, str(path))

    def log_parent_metrics(self, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.parent_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])

    # -- child runs --------------------------------------------------------------------

    @property
    def pending_dir(self) -> Path:
        """The stages of this parent's child runs (pending records after a failure)."""
        return pending_root(self.uri) / self.parent_id

    def start_child(self, run_key: str, params: Mapping[str, object]) -> ChildRun:
        """Creates a nested child run tagged with ``run_key`` and a fresh stage folder for it."""
        stage = self.pending_dir / run_key.replace("/", "__")
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        return ChildRun(self._create_child(run_key), run_key, params, stage)

    def _create_child(self, run_key: str) -> str:
        """A new RUNNING child run of the parent, tagged with ``run_key``; returns its id."""
        tags = {PARENT_TAG: self.parent_id, RUN_KEY_TAG: run_key, SPEC_HASH_TAG: self.spec_hash, VERSION_TAG: __version__}
        return self.client.create_run(self.experiment_id, run_name=run_key, tags=tags).info.run_id

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

    def write_child(self, child: ChildRun) -> None:
        """Writes a finished `ChildRun` (params, tags, metrics, staged artifacts) to MLflow, marks it
        with its status and removes its stage, once MLflow has everything."""
        from mlflow.entities import Metric, Param, RunTag

        self.client.log_batch(  # MLflow's client splits a batch into requests of its size limits
            child.run_id,
            metrics=[Metric(key, value, timestamp, step) for key, value, step, timestamp in child.metrics],
            params=[Param(k, v) for k, v in child.params.items()],
            tags=[RunTag(k, v) for k, v in child.tags.items()],
        )
        if child.artifacts.is_dir():
            self.client.log_artifacts(child.run_id, str(child.artifacts))
        self.client.set_terminated(child.run_id, child.status)
        shutil.rmtree(child.stage)
        with contextlib.suppress(OSError):  # no empty folder left behind (the shared pending/ root stays)
            self.pending_dir.rmdir()

    def log_pending(self, finished: Mapping[str, str]) -> dict[str, str]:
        """Writes the pending records of the parent (runs that finished while MLflow did not answer)
        as FINISHED child runs, skipping run keys in ``finished``; returns ``{run_key: run_id}`` written.

        Stages of runs that did not finish (no ``run.json``, or a failed run) are removed: those runs train again.
        """
        written = {}
        for stage in sorted(self.pending_dir.iterdir()) if self.pending_dir.is_dir() else []:
            try:
                saved = json.loads((stage / "run.json").read_text())
            except (OSError, ValueError):  # no record: the run did not finish, and trains again
                saved = {"status": None}
            if saved["status"] == "FINISHED" and saved["run_key"] not in finished:
                child = ChildRun(self._create_child(saved["run_key"]), saved["run_key"], saved["params"], stage)
                child.tags, child.metrics, child.status = saved["tags"], [tuple(m) for m in saved["metrics"]], "FINISHED"
                self.write_child(child)  # removes the stage
                written[child.run_key] = child.run_id
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
                self.client.set_tag(child.info.run_id, FAILURE_TAG, reason[:4900])
                self.client.set_terminated(child.info.run_id, status)

    def metric_history(self, run_id: str, key: str) -> list[float]:
        """A run's values of ``key`` ordered by step."""
        return [m.value for m in sorted(self.client.get_metric_history(run_id, key), key=lambda m: m.step)]

