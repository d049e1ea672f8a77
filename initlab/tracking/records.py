"""A child run as it trains (`ChildRun`, in memory), then as a *record* on local disk (`TrackerBase.stage`).

Nothing is lost when the store stops answering: a finished child run is first a record (a folder
under `initlab.tracking.store.pending_root`: ``run.json`` with its params, tags and metrics,
``artifacts/``), then written to MLflow (`initlab.tracking.tracker.ComparisonTracker.write_record`);
if MLflow fails, the record stays and ``--resume`` writes it.

>>> run = ChildRun("he/seed=0", {"scheme": "he", "seed": 0})
>>> run.add_epoch(1, {"val_accuracy": 0.91})
>>> run.curve("val_accuracy")
[0.91]
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from initlab.messages import one_line
from initlab.tracking.layout import DIAGNOSTICS_TAG, FAILURE_TAG, MAX_TAG_LENGTH
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
    `TrackerBase.stage` then makes it a record on disk and
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


class TrackerBase:
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
        refused = refusal(self.uri, error)
        if refused is not None:
            return refused
        where = self.pending_dir if self.parent_id else pending_root(self.uri)
        return TrackingLostError(
            f"the MLflow store {self.uri} stopped working ({type(error).__name__}: {one_line(error)}). "
            f"Runs that finished are kept, in MLflow or as pending records in {where}; "
            "when the store works again, rerun with --resume."
        )

