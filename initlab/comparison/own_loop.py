"""Your training loop in the comparison layout: `Comparison` is a parent run, `Comparison.run` a child run of it,
for a script around ``model.fit`` (or a loop of its own) instead of a spec.

>>> import keras_initlab as kil
>>> from initlab import Comparison
>>> with Comparison("my-study") as comparison:                                          # doctest: +SKIP
...     for scheme in ["he", "glorot"]:
...         for seed in range(3):
...             model = build(kil.Scheme(scheme, seed))
...             model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
...             with comparison.run(scheme, seed, model, x_sample=x_val[:500], y_sample=y_val[:500]) as run:
...                 model.fit(x, y, validation_data=(x_val, y_val), epochs=10, callbacks=[run.callback])
>>> comparison.url                                                                        # doctest: +SKIP

A child run gets what a spec's child gets (`initlab.tracking.layout`): the params (``scheme``, ``seed``, the first
layer's ``kernel_initializer`` and ``bias_initializer`` (every layer's in ``init/initializers.json``), ``parameters``,
the compiled optimizer's ``optimizer``/``learning_rate``/``optimizer_config``, ``epochs`` as ``fit`` was asked), the
step-0 diagnostics of the model on ``x_sample`` (``init/layer<k>/...``; the gradient norms with ``y_sample``), with both
the layers' statistics on them at step 0 and after every epoch (``layers/layer<k>/...``, `keras_initlab.watch`;
``watch=N``: every N epochs, ``False``: never), each epoch's logs at step = epoch (Keras' ``loss`` and ``accuracy`` as
``train_loss`` and ``train_accuracy``, the names a spec's runs have; ``val_*`` as they are), ``final_val_accuracy`` and
``best_val_accuracy``, the trained model with ``save_model=True``, and its status: FINISHED, FAILED (an exception,
re-raised) or KILLED (Ctrl-C).
A run that ends is a record on disk at once, written to MLflow by the comparison's background writer
(`initlab.tracking.TrackingQueue`), as ``initlab compare`` does: recording never waits on MLflow. Leaving the
comparison prints the summary table and logs it with the comparison plot on the parent run, saves the shared
chart view and prints the link to it (`Comparison.url`).
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import datetime

import keras

from initlab.background import quick_gil_handoff
from initlab.comparison.children import layer_initializers, optimizer_config_params, run_params
from initlab.comparison.summary import finish_parent, summary_files
from initlab.messages import one_line, shown
from initlab.spec import Run, SchemeSpec
from initlab.tracking import (
    ChildRun,
    Records,
    TrackingQueue,
    check_experiment,
    check_reachable,
    check_writable,
    http_limits,
    resolve_tracking_uri,
    ui_command,
    ui_url,
)
from keras_initlab.checks import check_int
from keras_initlab.diagnostics import diagnose
from keras_initlab.models import default_loss
from keras_initlab.schemes import Scheme
from keras_initlab.watch import WatchLayers, step_zero

KERAS_LOG_NAMES = {"loss": "train_loss", "accuracy": "train_accuracy"}
"""Keras' names of an epoch's training logs -> the names a spec's child runs use."""


class Comparison:
    """A comparison of initializations trained by your own code: the parent run, while the block runs.

    Args:
        name: the comparison's name: the experiment (unless ``experiment``) and the parent run's name.
        tracking_uri: the MLflow store, as `initlab.run_comparison` takes it (default ``$MLFLOW_TRACKING_URI``,
            else ``tracking/mlflow.db``).
        experiment: the MLflow experiment (default ``name``).
        progress: where the summary and the link are printed (default standard output; ``None``: nowhere).
        watch: ``True`` (every epoch), every how many epochs (an int >= 1), or ``False``: when the runs' layers are
            measured on their ``x_sample`` and ``y_sample`` (`keras_initlab.watch`).

    Raises, before any run: `initlab.spec.SpecError` for a name MLflow cannot hold (when made),
    `initlab.tracking.TrackingUnavailableError` for a store that cannot be used (when entered).
    """

    def __init__(
        self,
        name: str,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        progress="stdout",
        watch: bool | int = True,
    ):
        self.watch = int(watch) if isinstance(watch, bool) else check_int(watch, "watch", minimum=1)
        self.name = check_experiment(name)
        self.experiment = check_experiment(experiment or name)
        self.uri = resolve_tracking_uri(tracking_uri)
        self.progress = progress
        self.runs: list[ComparisonRun] = []  # those that ended, in order
        self._current: ComparisonRun | None = None
        self._queue: TrackingQueue | None = None
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> Comparison:
        if self._queue is not None:
            raise RuntimeError(f"Comparison {self.name!r} was entered once; make a new Comparison for another")
        check_reachable(self.uri)
        check_writable(self.uri)
        spec_hash = hashlib.sha256(f"own loop: {self.name}".encode()).hexdigest()[:16]
        records = Records(self.uri, self.experiment, spec_hash)
        with contextlib.ExitStack() as stack:  # closed again if anything below fails
            stack.enter_context(records.running(False, f"the comparison {self.name!r} in {self.uri}"))
            stack.enter_context(http_limits())
            stack.enter_context(quick_gil_handoff())
            self._queue = TrackingQueue(self.uri, self.experiment, spec_hash, records)
            stack.callback(self._queue.close)
            self._stack = stack.pop_all()

        def start(tracker):
            tracker.start_parent(
                {"training": "own loop"}, resume=False, run_name=f"{self.name} {datetime.now():%Y-%m-%d %H:%M}"
            )
            records.set_parent(tracker.parent_id)
            return tracker

        self._started = self._queue.submit(start)
        return self

    def run(
        self, scheme, seed: int, model: keras.Model, x_sample=None, y_sample=None, save_model: bool = False
    ) -> ComparisonRun:
        """A child run of ``model`` initialized by ``scheme`` (a built-in name, a (kernel, bias) pair of
        initializers, or a `keras_initlab.Scheme`) with ``seed``; use it as ``with comparison.run(...) as run:``
        and give ``run.callback`` to ``fit`` (or call ``run.log_epoch``). The step-0 diagnostics are measured
        here, on ``x_sample`` (and ``y_sample``), before the block trains.

        Raises:
            RuntimeError: outside the comparison's ``with`` block, or inside another run's.
            ValueError, TypeError: an unknown scheme name or not a (kernel, bias) pair, a seed that is not an
                int >= 0, a model that is not a ``keras.Model``, a (scheme, seed) this comparison already ran.
        """
        if self._queue is None or self._stack is None:
            raise RuntimeError("Comparison.run: use it inside `with Comparison(...) as comparison:`")
        if self._current is not None:
            raise RuntimeError(f"Comparison.run: run {self._current.key!r} has not ended; runs do not nest")
        seed = check_int(seed, "seed", minimum=0)
        name = (scheme if isinstance(scheme, Scheme) else Scheme(scheme, seed)).name
        if not isinstance(model, keras.Model):
            raise TypeError(f"Argument `model` must be a keras.Model. Received: model={shown(model)}")
        run = Run(SchemeSpec(name), seed)
        if run.key in {ended.key for ended in self.runs}:
            raise ValueError(f"Comparison.run: {run.key} already ran in this comparison; give another seed or scheme")
        self._current = ComparisonRun(self, run, model, x_sample, y_sample, save_model)
        return self._current

    def _ended(self, run: ComparisonRun) -> None:
        self._current = None
        self.runs.append(run)
        self._queue.submit_runs([run.child])

    @property
    def url(self) -> str:
        """The link to the comparison's chart view (`initlab.tracking.ui_url`); for a SQLite store, of the
        ``mlflow ui`` command printed beside it."""
        tracker = self._started.result()
        return ui_url(self.uri, tracker.experiment_id, tracker.parent_id)

    def __exit__(self, kind, error, traceback) -> bool:
        try:
            if error is None:
                self._finish()
            else:
                status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
                with contextlib.suppress(Exception):
                    self._queue.submit(lambda tracker: tracker.finish_parent(status))
                    self._queue.wait()
        finally:
            self._stack.close()
            self._stack = None
        return False

    def _finish(self) -> None:
        """The summary (printed, and on the parent with the plot), the shared view, the parent's status, the link."""
        by_scheme: dict[str, list[dict]] = {}  # the FINISHED runs' summary curves
        for run in sorted(self.runs, key=lambda run: run.key):
            curves = run.child.summary_curves()
            if run.child.status == "FINISHED" and curves.get("val_accuracy"):
                by_scheme.setdefault(run.scheme, []).append(curves)
        files, description, table = {}, None, "no finished run with val_accuracy: no summary"
        title = f"{self.name}: own training loop"
        try:
            files = summary_files(by_scheme, title, self.watch)[1] if by_scheme else {}
        except ValueError as e:  # seeds of a scheme that ran different numbers of epochs
            table = f"no summary: {one_line(e)}"
        if files:
            table = files["summary.md"]
            description = f"**{title}**, validation accuracy:\n\n{table}"
        status = "FINISHED" if all(run.child.status == "FINISHED" for run in self.runs) else "FAILED"
        runs, depth = len(self.runs), max((run.depth for run in self.runs), default=0)

        def finish(tracker):
            tracker.save_view(runs=runs, depth=depth)
            finish_parent(tracker, files, description, status)

        self._queue.submit(finish)
        self._queue.wait()
        if self.progress is not None:
            print(f"{table.rstrip()}\n\nlook: {ui_command(self.uri)}\n  then open {self.url}")


class ComparisonRun:
    """One child run of a `Comparison`, while its ``with`` block runs: `callback` for ``fit``, `log_epoch` for a
    loop of your own. Made by `Comparison.run`."""

    def __init__(self, comparison: Comparison, run: Run, model: keras.Model, x_sample, y_sample, save_model: bool):
        params = run_params(run.scheme.name, run.seed, model)
        if getattr(model, "optimizer", None) is not None:
            params.update(optimizer_config_params(model.optimizer))
        self.comparison, self.key, self.scheme, self.model, self.save_model = (
            comparison,
            run.key,
            run.scheme.name,
            model,
            save_model,
        )
        self.child = ChildRun(run.key, params)
        self.child.files["init/initializers.json"] = layer_initializers(model)
        self._watch, self.depth = None, 0
        if x_sample is not None:
            try:
                loss = None if y_sample is None else (getattr(model, "loss", None) or default_loss(model))
                table = diagnose(model, x_sample, y_sample, loss=loss)
                self.child.add_initial_diagnostics(table)
                if comparison.watch and y_sample is not None:
                    self._watch = WatchLayers(x_sample, y_sample, comparison.watch, loss)
                    self._watch.set_model(model)
                    self._watch.on_train_begin()
                    self.child.add_epoch(0, step_zero(table))
                    self.depth = len(table)
            except Exception as e:  # an initializer whose variance the theory lacks: the run goes on without
                self.child.skip_initial_diagnostics(f"{type(e).__name__}: {one_line(e)}")
        self.callback = _EpochLogs(self)
        self._last_epoch = 0

    def log_epoch(self, epoch: int, logs: dict) -> None:
        """One epoch's logs (``{name: number}``; Keras' names are mapped as `KERAS_LOG_NAMES`) at step ``epoch``
        (1-based, increasing)."""
        epoch = check_int(epoch, "epoch", minimum=self._last_epoch + 1)
        values = {}
        for name, value in logs.items():
            try:
                values[KERAS_LOG_NAMES.get(name, name)] = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"log_epoch: {name} must be a number; got {shown(value)}") from None
        if self._watch is not None:  # the layers' statistics join the epoch's values when due
            self._watch.on_epoch_end(epoch - 1, values)
        self._last_epoch = epoch
        self.child.add_epoch(epoch, values)

    def __enter__(self) -> ComparisonRun:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None:
            self.child.finish(self.model if self.save_model else None)
        elif isinstance(error, KeyboardInterrupt):
            self.child.finish(None, "KILLED", "interrupted")
        else:
            self.child.finish(None, "FAILED", f"{type(error).__name__}: {one_line(error)}")
        self.comparison._ended(self)
        return False


class _EpochLogs(keras.callbacks.Callback):
    """``run.callback``: every epoch's logs of ``fit`` into the run (`ComparisonRun.log_epoch`), and ``epochs``
    as ``fit`` was asked as a param."""

    def __init__(self, run: ComparisonRun):
        super().__init__()
        self.run = run

    def on_train_begin(self, logs=None):
        self.run.child.params["epochs"] = str(self.params.get("epochs"))

    def on_epoch_end(self, epoch, logs=None):
        self.run.log_epoch(self.run._last_epoch + 1, logs or {})
