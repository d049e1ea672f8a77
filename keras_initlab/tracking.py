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
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import keras

from keras_initlab._version import __version__

STORE_DIR = "tracking"
ROLE_TAG = "initlab.role"
SPEC_HASH_TAG = "initlab.spec_hash"
RUN_KEY_TAG = "initlab.run_key"
FAILURE_TAG = "initlab.failure"
VERSION_TAG = "initlab.version"
DIAGNOSTICS_TAG = "initlab.diagnostics"
PARENT_TAG = "mlflow.parentRunId"


class TrackingUnavailableError(RuntimeError):
    """The tracking server cannot be reached; the message names the URI."""


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/tracking/mlflow.db`` (folder created)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = Path.cwd() / STORE_DIR
    store.mkdir(exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


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


class EpochMetricsLogger(keras.callbacks.Callback):
    """Keras callback collecting a run's per-epoch logs; `flush` writes them in one batch.

    Epoch ``e`` (0-based in Keras) is logged with ``step = e + 1``.
    """

    def __init__(self, tracker: ComparisonTracker, run_id: str):
        super().__init__()
        self.tracker, self.run_id = tracker, run_id
        self.pending: list = []

    def on_epoch_end(self, epoch, logs=None):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(key, float(value), now, epoch + 1) for key, value in (logs or {}).items()]

    def flush(self) -> None:
        if self.pending:
            self.tracker.client.log_batch(self.run_id, metrics=self.pending)
            self.pending = []


class ComparisonTracker:
    """The MLflow side of one comparison: its experiment, parent run and child runs.

    Example:

    >>> tracker = ComparisonTracker("sqlite:///tracking/mlflow.db", "nielsen", spec_hash="ab12")
    >>> parent = tracker.start_parent(params={"epochs": 30}, resume=False)
    """

    def __init__(self, uri: str, experiment: str, spec_hash: str):
        from mlflow.tracking import MlflowClient

        self.uri, self.spec_hash = uri, spec_hash
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=_artifact_root(uri))
        elif found.lifecycle_stage == "deleted":
            raise ValueError(f"MLflow experiment {experiment!r} is deleted; restore it or choose another name.")
        else:
            self.experiment_id = found.experiment_id
        self.parent_id: str | None = None

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
            [self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_id}'", max_results=10_000
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

    def start_child(self, run_key: str, params: Mapping[str, object]) -> str:
        """Creates a nested child run tagged with ``run_key`` and logs its params; returns its id."""
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id,
            run_name=run_key,
            tags={PARENT_TAG: self.parent_id, RUN_KEY_TAG: run_key, SPEC_HASH_TAG: self.spec_hash, VERSION_TAG: __version__},
        )
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    def log_initial_diagnostics(self, run_id: str, table, figure) -> None:
        """Logs a child's `keras_initlab.diagnostics.diagnose` table at step 0.

        Metrics ``init/layer<depth>/<metric>`` (`DiagnosticsTable.metrics`), the
        table as ``init/diagnostics.md`` and ``figure`` (the activation histograms)
        as ``init/activations.png``.
        """
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in table.metrics().items()])
        self.client.log_text(run_id, table.to_markdown() + "\n", "init/diagnostics.md")
        self.client.log_figure(run_id, figure, "init/activations.png")

    def skip_initial_diagnostics(self, run_id: str, reason: str) -> None:
        """Records why a child has no initial diagnostics (the ``initlab.diagnostics`` tag)."""
        self.client.set_tag(run_id, DIAGNOSTICS_TAG, reason[:4900])

    def finish_child(self, run_id: str, model: keras.Model) -> None:
        """Logs the trained model as ``model/model.keras`` and marks the run FINISHED."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.keras"
            model.save(path)
            self.client.log_artifact(run_id, str(path), artifact_path="model")
        self.client.set_terminated(run_id, "FINISHED")

    def fail_child(self, run_id: str, reason: str, status: str = "FAILED") -> None:
        """Marks a child FAILED (or KILLED) with the reason as the ``initlab.failure`` tag."""
        self.client.set_tag(run_id, FAILURE_TAG, reason[:4900])
        self.client.set_terminated(run_id, status)

    def kill_running_children(self, reason: str) -> None:
        """Marks every child still RUNNING KILLED with ``reason`` (after an interrupt)."""
        for child in self.children():
            if child.info.status == "RUNNING":
                self.fail_child(child.info.run_id, reason, status="KILLED")

    def metric_history(self, run_id: str, key: str) -> list[float]:
        """A run's values of ``key`` ordered by step."""
        return [m.value for m in sorted(self.client.get_metric_history(run_id, key), key=lambda m: m.step)]
