"""`ComparisonTracker`: the MLflow requests of one comparison: its experiment, parent run and child runs.

The layout is `initlab.tracking.layout`'s; MLflow is imported when the tracker opens its store.

>>> tracker = ComparisonTracker("sqlite:///tracking/mlflow.db", "nielsen", spec_hash="ab12")  # doctest: +SKIP
>>> finished = tracker.start_parent(params={"epochs": 30}, resume=False)                    # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from pathlib import Path

from initlab.messages import one_line
from initlab.tracking.layout import (
    FAILURE_TAG,
    MAX_TAG_LENGTH,
    NOTE_TAG,
    PARENT_TAG,
    ROLE_TAG,
    RUN_KEY_TAG,
    SPEC_HASH_TAG,
    SUMMARY_METRICS,
    VERSION_TAG,
    VIEW_TAG_PREFIX,
)
from initlab.tracking.records import TrackerBase, remove_record
from initlab.tracking.store import (
    STORE_FIX,
    TrackingUnavailableError,
    adopt_prepared_store,
    artifact_root,
    refusal,
    store_lock,
)
from initlab.tracking.ui import view_state


@functools.cache
def _version() -> str:
    """The installed keras-initlab's version, tagged on every run (read once, when the first run is written)."""
    return version("keras-initlab")


def _one_writer(method):
    """A write to the store, made under the store's lock (`store_lock`, on a SQLite store): the workers of a local Ray
    cluster write child runs to the same SQLite file as the driver writes the parent, and SQLite answers a writer that
    waits longer than its timeout "database is locked" (seen on a loaded 2-core machine: a parent left RUNNING)."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with store_lock(self.uri):
            return method(self, *args, **kwargs)

    return locked


class ComparisonTracker(TrackerBase):
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
            with store_lock(uri):
                adopt_prepared_store(uri)
                self.client = MlflowClient(tracking_uri=uri)
                self.experiment_id = self._experiment(experiment)
        except TrackingUnavailableError:
            raise
        except Exception as e:  # MLflow's errors, the OS's, SQLAlchemy's (a file that is not an MLflow store)
            raise refusal(uri, e) or TrackingUnavailableError(
                f"cannot use the MLflow store {uri}: {one_line(e)}. {STORE_FIX}"
            ) from None
        self.parent_id: str | None = None

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(name, artifact_location=artifact_root(self.uri))
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

    @_one_writer
    def start_parent(self, params: Mapping[str, object], resume: bool, run_name: str | None = None) -> dict[str, str]:
        """Starts the parent run (named ``run_name``), or with ``resume`` re-opens the latest one of the
        same spec hash (its name kept).

        Returns ``{run_key: run_id}`` of the children already FINISHED under it
        (always empty for a new parent). Unfinished children of a resumed parent
        are deleted, so that nothing is logged twice.
        """
        from mlflow.entities import Param

        previous = self.latest_parent() if resume else None
        if previous is not None:
            self.parent_id = previous
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
            tags={ROLE_TAG: "comparison", SPEC_HASH_TAG: self.spec_hash, VERSION_TAG: _version()},
        )
        self.parent_id = run.info.run_id
        self.client.log_batch(self.parent_id, params=[Param(k, str(v)) for k, v in params.items()])
        return {}

    def latest_parent(self) -> str | None:
        """The id of the latest parent run of this spec's hash in the experiment (what ``--resume`` re-opens), if
        any."""
        previous = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = 'comparison' and tags.`{SPEC_HASH_TAG}` = '{self.spec_hash}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return previous[0].info.run_id if previous else None

    def run_params(self, run_id: str) -> dict[str, str]:
        """The params of the run ``run_id``."""
        return dict(self.client.get_run(run_id).data.params)

    @_one_writer
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

    @_one_writer
    def finish_parent(self, status: str) -> None:
        self.client.set_terminated(self.parent_id, status)

    @_one_writer
    def describe_parent(self, text: str) -> None:
        """``text`` (Markdown) as the parent run's description, shown on its page (``mlflow.note.content``)."""
        self.client.set_tag(self.parent_id, NOTE_TAG, text[:MAX_TAG_LENGTH])

    @_one_writer
    def log_parent_artifacts(self, files: Mapping[str, str | bytes]) -> None:
        """Files (text or bytes), by file name, as parent-run artifacts."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                (Path(tmp) / name).write_bytes(content.encode() if isinstance(content, str) else content)
            self.client.log_artifacts(self.parent_id, tmp)

    @_one_writer
    def save_view(self, runs: int, depth: int | None = None) -> None:
        """The parent's chart view (`view_state`, with the "Layers" section for watched models of ``depth``
        layers) as the experiment's shared view named by the parent's id (the tag
        ``mlflow.sharedViewState.<parent id>``), which `ui_url` opens."""
        state = view_state(self.parent_id, runs, depth)
        self.client.set_experiment_tag(self.experiment_id, f"{VIEW_TAG_PREFIX}{self.parent_id}", json.dumps(state))

    # -- child runs --------------------------------------------------------------------

    def write_record(self, stage: Path) -> str:
        """Writes the record in ``stage`` (`stage`) to MLflow as a child run of the parent: created with its
        start time, its artifacts, its params, tags and metrics in one batch, then marked with its status.
        Removes the record once MLflow has everything; returns the run id."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        saved = json.loads((stage / "run.json").read_text())
        tags = {
            PARENT_TAG: self.parent_id,
            RUN_KEY_TAG: saved["run_key"],
            SPEC_HASH_TAG: self.spec_hash,
            VERSION_TAG: _version(),
        }
        # One writer at a time on a SQLite store: the workers of a local Ray instance write concurrently, and SQLite
        # would answer some of them "database is locked".
        with store_lock(self.uri):
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
        remove_record(stage)
        return run_id

    def log_records(self, stages: Sequence[Path], finished: Mapping[str, str]) -> dict[str, str]:
        """Writes the records ``stages`` (`initlab.tracking.records.Records.waiting`: runs that ended while MLflow
        did not answer, or before the process died) of FINISHED runs as child runs, with their own times, skipping
        run keys in ``finished`` and keys written already; returns ``{run_key: run_id}`` written. The other records
        (failed or interrupted runs, which train again) are removed."""
        written = {}
        for stage in stages:
            try:
                saved = json.loads((stage / "run.json").read_text())
            except (OSError, ValueError):  # no record: the run did not finish, and trains again
                saved = {"status": None, "run_key": None}
            if saved["status"] == "FINISHED" and saved["run_key"] not in {**finished, **written}:
                written[saved["run_key"]] = self.write_record(stage)  # removes the record
            else:
                remove_record(stage)
        return written

    @_one_writer
    def kill_running_children(self, reason: str, status: str = "KILLED") -> None:
        """Marks every child still RUNNING ``status`` (KILLED after an interrupt) with ``reason``."""
        for child in self.children():
            if child.info.status == "RUNNING":
                self.client.set_tag(child.info.run_id, FAILURE_TAG, reason[:MAX_TAG_LENGTH])
                self.client.set_terminated(child.info.run_id, status)

    def summary_curves(self, runs: Mapping[str, str]) -> dict[str, dict[str, list[float]]]:
        """``{name: {metric: values by step}}`` of the `initlab.tracking.layout.SUMMARY_METRICS` of the runs
        ``{name: run id}`` (what `initlab.tracking.ChildRun.summary_curves` gives of a run trained here)."""
        out = {}
        for name, run_id in runs.items():
            keys = sorted(key for key in self.client.get_run(run_id).data.metrics if SUMMARY_METRICS.fullmatch(key))
            out[name] = {
                key: [m.value for m in sorted(self.client.get_metric_history(run_id, key), key=lambda m: m.step)]
                for key in keys
            }
        return out
