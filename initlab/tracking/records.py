"""A child run as it trains (`ChildRun`, in memory), then as a *record* on local disk (`Records.stage`).

Nothing is lost when the store stops answering or the process dies: a child run is a record (a folder
under `initlab.tracking.store.pending_root`: ``run.json`` with its params, tags and metrics,
``artifacts/``) as soon as it ends, then written to MLflow
(`initlab.tracking.tracker.ComparisonTracker.write_record`); until MLflow has it, the record stays and
``--resume`` writes it.

>>> run = ChildRun("he/seed=0", {"scheme": "he", "seed": 0})
>>> run.add_epoch(1, {"val_accuracy": 0.91})
>>> run.curve("val_accuracy")
[0.91]
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from initlab.messages import one_line
from initlab.tracking.layout import DIAGNOSTICS_TAG, FAILURE_TAG, MAX_TAG_LENGTH, SUMMARY_METRICS
from initlab.tracking.store import TrackingLostError, TrackingUnavailableError, pending_root, refusal

if TYPE_CHECKING:
    import keras


def initializer_param(init: keras.initializers.Initializer) -> str:
    """``ClassName {config JSON}``: how an initializer is recorded as a run parameter."""
    return f"{type(init).__name__} {json.dumps(init.get_config(), sort_keys=True)}"


def _now_ms() -> int:
    return int(time.time() * 1000)


class ChildRun:
    """One child run as it trains: everything it will hold, in memory until it ends.

    `add_initial_diagnostics` and `add_lsuv` add the step-0 metrics and the files
    ``init/diagnostics.md``, ``init/activations.png``, ``init/lsuv.md``; the epochs'
    metrics arrive through `add_epoch` (from `initlab.comparison.children.EpochMetricsLogger`);
    `finish` ends it (status, reason, the trained model, the summary metrics).
    `Records.stage` then makes it a record on disk and
    `initlab.tracking.tracker.ComparisonTracker.write_record` writes that to MLflow.
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

    def summary_curves(self) -> dict[str, list[float]]:
        """``{metric: values by step}`` of its `initlab.tracking.layout.SUMMARY_METRICS`."""
        return {
            key: self.curve(key) for key in sorted({key for key, *_ in self.metrics if SUMMARY_METRICS.fullmatch(key)})
        }

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
            lines.append(
                f"| {depth} | {step.layer} | {step.iterations} | {step.std_before:.4g} | "
                f"{step.std_after:.4g} | {'yes' if step.dead else ''} |"
            )
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


class Records:
    """Where a comparison's ended child runs wait on local disk (`stage`) until they are in MLflow.

    ``pending_root(uri)/<spec hash>-<experiment digest>/<attempt>/<run key>/``: ``run.json`` (params, tags,
    metrics, times) and ``artifacts/``. An *attempt* is one process's part of a comparison (``<ns>-<pid>``);
    its ``parent`` file names the parent run once it exists (`set_parent`). A run is staged when it ends, in the
    thread that trained it, before and whatever the store does: a process killed at any moment after a run
    ended leaves its record, and ``--resume`` writes it (`waiting`). `running` keeps two resumes of one
    comparison from writing the same runs.

    >>> records = Records("sqlite:///tmp/store/mlflow.db", "nielsen", "ab12")
    >>> records.root.parent
    PosixPath('/tmp/store/pending')
    """

    def __init__(self, uri: str, experiment: str, spec_hash: str, parent_id: str | None = None):
        digest = hashlib.sha256(experiment.encode()).hexdigest()[:12]
        self.root = pending_root(uri) / f"{spec_hash}-{digest}"
        self.attempt = self.root / f"{time.time_ns()}-{os.getpid()}"
        self.unwritten: dict[str, str] = {}  # run key -> why its record could not be written
        if parent_id is not None:
            self.set_parent(parent_id)

    @contextlib.contextmanager
    def running(self, resume: bool, what: str) -> Iterator[None]:
        """Held while the comparison runs: a lock on ``<root>.lock``, shared by the comparisons of one spec (each has
        a parent run of its own), exclusive for ``resume``, which re-opens the latest parent.

        Raises:
            TrackingUnavailableError: a resume while the comparison runs, or anything while it is resumed (``what``
                names the comparison in the message).
        """
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with open(self.root.with_suffix(".lock"), "a") as lock:
            try:
                fcntl.flock(lock, (fcntl.LOCK_EX if resume else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TrackingUnavailableError(
                    f"{what} is {'running' if resume else 'being resumed'} in another process on this machine "
                    f"(it holds {lock.name}); wait for it to end, then rerun with --resume"
                ) from None
            yield

    def set_parent(self, parent_id: str) -> None:
        """Names the parent run of this attempt's records."""
        self.attempt.mkdir(parents=True, exist_ok=True)
        (self.attempt / "parent").write_text(parent_id)

    def stage(self, child: ChildRun) -> Path | None:
        """``child`` (ended) as a record: its files, its model as ``model/model.keras`` and, last, ``run.json``,
        written whole or not at all (a record without ``run.json`` is never read). Returns the record's folder;
        ``None`` when it cannot be written (a full disk: the run key and the reason go to `unwritten`)."""
        stage = self.attempt / child.run_key.replace("/", "__")
        try:
            shutil.rmtree(stage, ignore_errors=True)
            for name, content in child.files.items():
                (stage / "artifacts" / name).parent.mkdir(parents=True, exist_ok=True)
                (stage / "artifacts" / name).write_bytes(content)
            if child.model is not None:
                (stage / "artifacts" / "model").mkdir(parents=True, exist_ok=True)
                child.model.save(stage / "artifacts" / "model" / "model.keras")
            stage.mkdir(parents=True, exist_ok=True)
            record = {
                "run_key": child.run_key,
                "status": child.status,
                "params": child.params,
                "tags": child.tags,
                "metrics": child.metrics,
                "start_time": child.start_time,
                "end_time": child.end_time,
            }
            partial = stage / "run.json.partial"
            with open(partial, "w") as file:
                json.dump(record, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, stage / "run.json")
        except OSError as e:
            self.unwritten[child.run_key] = f"{type(e).__name__}: {e.strerror or e}"
            shutil.rmtree(stage, ignore_errors=True)
            return None
        return stage

    def waiting(self, parent_id: str, every: bool = False) -> list[Path]:
        """The records left by other attempts for the parent ``parent_id`` (those of attempts that died before
        their parent existed included; with ``every``, those of any parent: the store lost them), oldest first;
        folders without a ``run.json`` (a run cut short) are removed."""
        found = []
        for attempt in sorted(self.root.iterdir(), key=_attempt_order) if self.root.is_dir() else []:
            if attempt == self.attempt or not attempt.is_dir():
                continue
            parent = attempt / "parent"
            if not every and parent.is_file() and parent.read_text() != parent_id:
                continue
            for stage in sorted(attempt.iterdir()):
                if stage.is_dir() and (stage / "run.json").is_file():
                    found.append(stage)
                elif stage.is_dir():
                    shutil.rmtree(stage)
            if not found or found[-1].parent != attempt:
                remove_record(attempt / "parent")  # nothing in it: gone
        return found

    def kept_message(self) -> str:
        """What a failed comparison says about its finished runs, truthfully."""
        text = (
            f"Runs that finished are kept, in MLflow or as records in {self.root}: rerun with --resume when "
            "the store works again."
        )
        if self.unwritten:
            keys = ", ".join(list(self.unwritten)[:5]) + (", ..." if len(self.unwritten) > 5 else "")
            text += (
                f" {len(self.unwritten)} finished run(s) could not be written to disk either "
                f"({next(iter(self.unwritten.values()))}: {keys}); they train again."
            )
        return text


def _attempt_order(attempt: Path) -> tuple:
    start, _, pid = attempt.name.partition("-")
    return (int(start), pid) if start.isdigit() else (0, attempt.name)


def remove_record(path: Path) -> None:
    """Removes a record's folder (or an attempt's ``parent`` file), then its attempt's folder once no record is left
    in it, then the comparison's folder once empty (`Records`)."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    attempt = path.parent
    if attempt.is_dir() and not [p for p in attempt.iterdir() if p.is_dir()]:
        shutil.rmtree(attempt, ignore_errors=True)
        with contextlib.suppress(OSError):
            attempt.parent.rmdir()


MAX_REASON = 200
"""Characters of a store's error that the one line reporting it keeps."""


class TrackerBase:
    """What a comparison's tracker does on this machine, without MLflow: the error that a failed store becomes
    (`lost`)."""

    uri: str

    def lost(self, error: BaseException) -> TrackingUnavailableError:
        """The error to raise when MLflow fails mid-comparison: what happened (`Records.kept_message` says where the
        runs are and what to do). A refused login or permission is not a store that stopped: a
        `TrackingUnavailableError` says so."""
        reason = one_line(error)  # MLflow's SQL errors hold the statement and its parameters: the first words say it
        reason = reason if len(reason) <= MAX_REASON else reason[:MAX_REASON] + "..."
        return refusal(self.uri, error) or TrackingLostError(
            f"the MLflow store {self.uri} stopped working ({type(error).__name__}: {reason})."
        )
