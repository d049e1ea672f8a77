"""Running a comparison spec: data -> models -> trainers -> MLflow tracking -> report.

`run_comparison` trains every (scheme, seed) run of a `keras_initlab.spec.ComparisonSpec`
and tracks it (`keras_initlab.tracking`); `diagnose_spec` shows every scheme of a
spec at initialization. Both need the TensorFlow backend (`keras_initlab.backend`).

>>> from keras_initlab.spec import ComparisonSpec
>>> outcome = run_comparison("nielsen")  # a built-in spec (initlab list), or a spec file's path  # doctest: +SKIP
>>> outcome.summary[0].final                                                            # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import keras
import numpy as np

from keras_initlab.backend import require_tensorflow
from keras_initlab.cluster import Cluster, check_store_reachable, connect, disconnect, parse_address
from keras_initlab.checks import one_line
from keras_initlab.data import Dataset, load_dataset
from keras_initlab.diagnostics import diagnose
from keras_initlab.models import (
    FactoryError, as_model_input, build_convnet, build_from_factory, build_mlp, default_loss, factory_name, load_factory,
)
from keras_initlab.lsuv import LSUVStep, lsuv
from keras_initlab.schemes import LSUV, Scheme
from keras_initlab.plots import diagnose_with_histograms, plot_comparison, plot_preactivation_std_by_depth, to_png
from keras_initlab.report import summarize, to_csv, to_markdown
from keras_initlab.spec import (
    ComparisonSpec, ConvNetModel, FactoryModel, MLPModel, Run, SchemeSpec, SpecError, spec_path,
)
from keras_initlab.tracking import (
    ChildRun, ComparisonTracker, TrackingUnavailableError, TrackingWriter,
    check_reachable, check_writable, http_limits, initializer_param, lower_thread_priority, quick_gil_handoff,
    resolve_tracking_uri,
)
from keras_initlab.training import resolve_device, train, train_stacked
from keras_initlab.training.planning import memory_budget, mlp_bytes, wave_size


# -- models, data and diagnostics of a spec ------------------------------------------------

DIAGNOSTIC_EXAMPLES = 1000
"""How many validation examples (the first ones) the diagnostics at initialization use."""


def load_spec_data(spec: ComparisonSpec) -> Dataset:
    """The spec's dataset (`keras_initlab.data.load_dataset`), cut to ``subset`` when it has one.

    A dataset that cannot be loaded (unknown name, missing or corrupt files) or a
    subset larger than the data is a `SpecError` naming the key.
    """
    try:
        data = load_dataset(spec.dataset, data_dir=spec.data_dir)
    except (ValueError, OSError, ImportError) as e:
        raise SpecError(f"dataset: {spec.dataset!r} cannot be loaded: {one_line(e)}") from None
    if spec.subset is None:
        return data
    for key, wanted, available in zip(("subset.train", "subset.val"), spec.subset, (data.n_train, data.n_val)):
        if wanted > available:
            raise SpecError(f"{key}: {wanted} examples asked for, but {data.name} has {available}")
    return data.subset(*spec.subset)


def resolve_spec_device(spec: ComparisonSpec) -> str:
    """The TensorFlow device of ``spec.device``; a GPU asked for on a machine without one is a `SpecError`."""
    try:
        return resolve_device(spec.device)
    except RuntimeError as e:
        raise SpecError(f"device: {e}") from None


class ModelBuilder:
    """Builds the untrained model of any (scheme, seed) run of a spec, and the loss that trains it.

    A factory is loaded once, here (`keras_initlab.models.load_factory`); a factory that
    cannot be loaded is a `SpecError` on ``model.factory``.

    >>> builder = ModelBuilder(spec, data)                                  # doctest: +SKIP
    >>> model = builder.build(spec.schemes[0], seed=0)                      # doctest: +SKIP
    """

    def __init__(self, spec: ComparisonSpec, data: Dataset):
        self.spec, self.data = spec, data
        self.factory = None
        if isinstance(spec.model, FactoryModel):
            try:
                self.factory = load_factory(spec.model.factory, spec.base_dir)
            except FactoryError as e:
                raise SpecError(f"model.factory: {e}") from None

    def build(self, scheme: SchemeSpec, seed: int) -> keras.Model:
        """The model of one run, initialized by ``scheme`` with ``seed``."""
        model, data = self.spec.model, self.data
        if isinstance(model, MLPModel):
            return build_mlp(
                model.sizes, model.activation, model.output, scheme.initializers(),
                l2_lambda=self.spec.l2_lambda, n_train=data.n_train, seed=seed,
            )
        if isinstance(model, ConvNetModel):
            return build_convnet(
                data.image_shape, model.filters, data.num_classes, model.activation, model.output,
                scheme.initializers(), l2_lambda=self.spec.l2_lambda, n_train=data.n_train, seed=seed,
            )
        return build_from_factory(self.factory, Scheme(scheme.initializers(), seed), data.image_shape, data.num_classes)

    def initial(self, scheme: SchemeSpec, seed: int) -> tuple[keras.Model, list[LSUVStep] | None]:
        """The model a run starts from, and what `keras_initlab.lsuv` did to it (``None`` but for ``lsuv``).

        `build`, then the scheme's data-dependent step: for ``lsuv``, `keras_initlab.lsuv` on the
        first `lsuv_examples` training examples.
        """
        model = self.build(scheme, seed)
        if scheme.name != LSUV:
            return model, None
        return model, lsuv(model, self.data.x_train[: self.lsuv_examples])

    def diagnose(self, model: keras.Model, lsuv_steps: list[LSUVStep] | None, title: str | None = None) -> tuple:
        """``(table, figure)``: `keras_initlab.diagnostics.diagnose` on `diagnostic_batch`, with the loss that
        trains the model (no predicted std for weights LSUV set from data), and with a ``title`` the activation
        histograms from the same forward pass (`diagnose_with_histograms`); without one, the figure is ``None``."""
        x, y = diagnostic_batch(self.data)
        if title is None:
            return diagnose(model, x, y, loss=self.loss(model), predict=lsuv_steps is None), None
        return diagnose_with_histograms(model, x, y, loss=self.loss(model), predict=lsuv_steps is None, title=title)

    @property
    def lsuv_examples(self) -> int:
        """How many examples the ``lsuv`` scheme rescales on: the spec's ``lsuv_examples``, at most the training set."""
        return min(self.spec.lsuv_examples, self.data.n_train)

    def loss(self, model: keras.Model) -> Callable:
        """The spec's ``loss``; for a factory without one, sparse categorical cross-entropy; for the
        built-in models, the loss of their output (`keras_initlab.models.default_loss`)."""
        if self.spec.loss is not None:
            return keras.losses.get(copy.deepcopy(self.spec.loss))
        if self.factory is not None:
            return keras.losses.sparse_categorical_crossentropy
        return default_loss(model)


def check_spec_fits(spec: ComparisonSpec, data: Dataset, device_name: str) -> ModelBuilder:
    """Everything the spec, the data's shape and the memory plan allow to check, before any run exists;
    returns the spec's `ModelBuilder`.

    A batch must fit the training set. For the MLP the first size must be the
    number of pixels of an image and the last the number of classes, and one
    model (weights, gradients, activations and the data on the device,
    `mlp_bytes`) must fit the memory budget (`memory_budget`). Every scheme's
    model is built once, so initializers that do not fit their layers (e.g. a
    sparse initializer with more connections than a layer's fan-in) and a
    factory that fails or returns the wrong model fail here; a factory model's
    loss is computed on a few validation examples, and with the default loss its
    outputs must be class probabilities. Raises a `SpecError` naming the key.
    """
    if spec.batch_size > data.n_train:
        raise SpecError(f"batch_size: {spec.batch_size} is larger than the {data.n_train} training examples")
    if isinstance(spec.model, MLPModel):
        _check_mlp_fits(spec.model, spec.batch_size, data, device_name)
    builder = ModelBuilder(spec, data)
    for i, scheme in enumerate(spec.schemes):
        try:
            model = builder.build(scheme, spec.seeds[0])
        except FactoryError as e:
            raise SpecError(f"model.factory: with scheme {scheme.name}: {e}") from None
        except (ValueError, TypeError) as e:
            raise SpecError(f"schemes[{i}] ({scheme.name}): {one_line(e)}") from None
        if builder.factory is not None and i == 0:
            _check_factory_outputs(spec, builder, model)
    return builder


def _check_mlp_fits(model: MLPModel, batch_size: int, data: Dataset, device_name: str) -> None:
    pixels = math.prod(data.image_shape)
    if model.sizes[0] != pixels:
        raise SpecError(
            f"model.sizes[0]: {model.sizes[0]} inputs, but the images of {data.name} have "
            f"{'x'.join(map(str, data.image_shape))} = {pixels} values; use {pixels}"
        )
    if model.sizes[-1] != data.num_classes:
        raise SpecError(
            f"model.sizes[-1]: {model.sizes[-1]} outputs, but {data.name} has {data.num_classes} classes; "
            f"use {data.num_classes}"
        )
    shared, per_model = mlp_bytes(list(model.sizes), data.n_train, data.n_val, batch_size)
    budget = memory_budget(device_name)
    if shared + per_model > budget:
        raise SpecError(
            f"model.sizes: one model needs about {per_model / 2**20:.0f} MiB and the data "
            f"{shared / 2**20:.0f} MiB, but {budget / 2**20:.0f} MiB may be used on {device_name}"
        )


FACTORY_CHECK_EXAMPLES = 8
"""How many validation examples a factory model's outputs and loss are checked on before any run."""


def _check_factory_outputs(spec: ComparisonSpec, builder: ModelBuilder, model: keras.Model) -> None:
    """The factory model's loss is finite on a few examples; with the default loss, its outputs are probabilities."""
    x, y = (a[:FACTORY_CHECK_EXAMPLES] for a in (builder.data.x_val, builder.data.y_val))
    name = factory_name(builder.factory)
    try:
        pred = keras.ops.convert_to_numpy(model(as_model_input(model, x), training=False))
        loss = float(np.mean(keras.ops.convert_to_numpy(builder.loss(model)(y, pred))))
    except Exception as e:
        where = "loss" if spec.loss is not None else "model.factory"
        raise SpecError(f"{where}: computing {name}'s loss on {len(x)} examples raised {one_line(e)}") from None
    if spec.loss is None:
        low, high, sums = float(pred.min()), float(pred.max()), pred.sum(axis=-1)
        if low < 0 or high > 1 or np.abs(sums - 1).max() > 1e-3:
            raise SpecError(
                f"model.factory: {name}'s outputs on {len(x)} validation images are not class probabilities "
                f"(values in [{low:.3g}, {high:.3g}], rows summing to {sums.min():.3g}..{sums.max():.3g}); "
                "end the model with a softmax, or give a loss that takes its outputs, e.g. "
                "loss: {class_name: SparseCategoricalCrossentropy, config: {from_logits: true}}"
            )
    if not math.isfinite(loss):
        raise SpecError(f"model.factory: {name}'s loss on {len(x)} validation images is {loss} before training")


def diagnostic_batch(data: Dataset) -> tuple:
    """``(x, y)``: the first `DIAGNOSTIC_EXAMPLES` validation examples, the same for every run."""
    n = min(DIAGNOSTIC_EXAMPLES, data.n_val)
    return data.x_val[:n], data.y_val[:n]


def diagnose_spec(spec: ComparisonSpec, out_dir: str | os.PathLike, seed: int | None = None) -> dict:
    """Every scheme of ``spec`` at initialization: ``{scheme: DiagnosticsTable}``, and figures in ``out_dir``.

    Builds each scheme's model with ``seed`` (default: the spec's first seed),
    runs `keras_initlab.diagnostics.diagnose` on `diagnostic_batch`, and writes
    ``activations-<scheme>.png`` (per-layer activation histograms) per scheme
    and ``preact-std-by-depth.png`` (measured std, predicted dashed, every
    scheme on one axis). An initializer whose variance the theory does not know
    is a `SpecError` naming the scheme.

    >>> tables = diagnose_spec(ComparisonSpec.from_file(spec_path("deep-tanh")), "out")  # doctest: +SKIP
    """
    require_tensorflow("initlab diagnose")
    seed = spec.seeds[0] if seed is None else seed
    data = load_spec_data(spec)
    builder = check_spec_fits(spec, data, resolve_spec_device(spec))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {}
    for i, scheme in enumerate(spec.schemes):
        model, steps = builder.initial(scheme, seed)
        title = f"{scheme.name} (seed {seed}): activations at initialization"
        try:
            tables[scheme.name], figure = builder.diagnose(model, steps, title)
        except TypeError as e:
            raise SpecError(f"schemes[{i}] ({scheme.name}): cannot predict its variance: {e}") from None
        figure.savefig(out / f"activations-{scheme.name}.png")
    title = f"{spec.name} at initialization (dashed: predicted)"
    figure = plot_preactivation_std_by_depth(tables, title=title, show_predicted=True)
    figure.savefig(out / "preact-std-by-depth.png")
    return tables


# -- running a comparison ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ComparisonOutcome:
    """What `run_comparison` did: where it logged, the summary, and which runs failed."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    summary: list
    failures: dict[str, str]
    skipped: list[str]


class _Interrupts:
    """Ctrl-C that is never lost.

    Python raises `KeyboardInterrupt` wherever the main thread is, and drops it when that is a
    finalizer (an object's ``__del__`` run by the garbage collector: "Exception ignored in ..."),
    so a comparison could go on to the end. While this context is active a SIGINT is also
    remembered, and `check` (after every epoch and before every group) raises it again.
    """

    def __init__(self):
        self.received, self.installed, self.previous = False, False, None

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():  # whatever a library installed before
            self.previous, self.installed = signal.signal(signal.SIGINT, self._handle), True
        return self

    def _handle(self, signum, frame):
        self.received = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.received:
            raise KeyboardInterrupt

    def __exit__(self, *exc_info) -> None:
        if self.installed:  # None: a handler installed outside Python; Python's own is the nearest
            signal.signal(signal.SIGINT, signal.default_int_handler if self.previous is None else self.previous)


class _Progress(keras.callbacks.Callback):
    """The comparison's progress on ``stream`` (``None``: silent), and the checks made after every epoch.

    On a terminal one live line: a bar over all the epochs to train (every run's), the
    runs done, the epoch of the runs in training and the estimated time left. Elsewhere
    (a pipe, a file) one line per epoch: ``[2/6 runs done] <runs>: epoch 3/30  (<run>:
    val_accuracy 0.9123)``. ``checks`` (Ctrl-C, a store that failed) run after every epoch.
    """

    BAR = 24

    def __init__(self, stream, runs: int, epochs: int, checks: Sequence[Callable[[], None]]):
        super().__init__()
        self.stream, self.runs, self.epochs, self.checks = stream, runs, epochs, checks
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.done, self.size, self.label, self.reporting = 0, 1, "", ""
        self.trained = 0  # run-epochs trained so far
        self.started = time.perf_counter()

    def start(self, runs: Sequence[Run]) -> None:
        """A new group of ``runs``, trained together; this callback sees the logs of the last one."""
        self.size, self.label, self.reporting = len(runs), _label(runs), runs[-1].key

    def on_epoch_end(self, epoch, logs=None):
        for check in self.checks:
            check()
        self.trained += self.size
        if self.stream is None:
            return
        accuracy = f"val_accuracy {logs['val_accuracy']:.4f}" if logs and "val_accuracy" in logs else ""
        if self.tty:
            self._live(epoch, accuracy)
        else:
            line = f"[{self.done}/{self.runs} runs done] {self.label}: epoch {epoch + 1}/{self.epochs}"
            self.stream.write(line + (f"  ({self.reporting}: {accuracy})" if accuracy else "") + "\n")
        self.stream.flush()

    def _live(self, epoch: int, accuracy: str) -> None:
        total = self.runs * self.epochs
        filled = round(self.BAR * self.trained / total)
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.trained * (total - self.trained)
        line = (f"[{'#' * filled}{'.' * (self.BAR - filled)}] {self.done}/{self.runs} runs  ETA {_clock(eta)}  "
                f"epoch {epoch + 1}/{self.epochs}  {accuracy}  {self.label}")
        width = shutil.get_terminal_size().columns - 1
        self.stream.write("\r" + line[:width] + "\x1b[K")

    def report(self, runs: Sequence[Run], epoch: int, logs: dict | None) -> None:
        """Epoch ``epoch`` (0-based) of a group of ``runs`` trained elsewhere (a unit on a cluster), with the logs of its last run."""
        self.start(runs)
        self.on_epoch_end(epoch, logs)

    def finish(self, runs: int) -> None:
        """``runs`` more runs done (however many epochs they trained)."""
        self.done += runs
        self.trained = self.done * self.epochs

    def close(self) -> None:
        """On a terminal, the live line gives way to the total time."""
        if self.stream is not None and self.tty:
            elapsed = _clock(time.perf_counter() - self.started)
            self.stream.write(f"\r{self.done}/{self.runs} runs trained in {elapsed}\x1b[K\n")
            self.stream.flush()


def _label(runs: Sequence[Run]) -> str:
    """The run keys of a group, or for more than two ``<schemes> x seed(s) <seeds>`` when they form that grid."""
    schemes = list(dict.fromkeys(run.scheme.name for run in runs))
    seeds = list(dict.fromkeys(str(run.seed) for run in runs))
    if len(runs) <= 2 or len(runs) != len(schemes) * len(seeds):
        return ", ".join(run.key for run in runs)
    return f"{', '.join(schemes)} x seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"


def _clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour)."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def model_params(spec: ComparisonSpec) -> dict[str, str]:
    """The spec's model as run parameters: ``sizes``, ``activation``, ``output`` of the MLP; ``kind``,
    ``filters``, ... of the conv net; ``factory`` (and ``loss``) of a factory model."""
    params = {key: json.dumps(value) if isinstance(value, list) else value for key, value in spec.model.to_json().items()}
    if isinstance(spec.model, FactoryModel):
        params["loss"] = "sparse_categorical_crossentropy" if spec.loss is None else json.dumps(spec.loss)
    return params


def optimizer_params(spec: ComparisonSpec) -> dict[str, str]:
    """``optimizer`` (the class name), ``learning_rate`` and ``optimizer_config`` (Keras' full config as
    JSON, without the instance name Keras numbers: equal optimizers, equal params)."""
    optimizer = spec.build_optimizer()
    config = {k: v for k, v in keras.optimizers.serialize(optimizer)["config"].items() if k != "name"}
    return {
        "optimizer": type(optimizer).__name__,
        "learning_rate": json.dumps(config["learning_rate"]) if isinstance(config["learning_rate"], dict)
        else config["learning_rate"],
        "optimizer_config": json.dumps(config, sort_keys=True),
    }


def shared_params(spec: ComparisonSpec, device: str) -> dict:
    """The params every child run of ``spec`` has in common (computed once per comparison)."""
    return {
        **model_params(spec),
        "dataset": spec.dataset if spec.subset is None else f"{spec.dataset}[:{spec.subset[0]},:{spec.subset[1]}]",
        "epochs": spec.epochs,
        "batch_size": spec.batch_size,
        **optimizer_params(spec),
        "l2_lambda": spec.l2_lambda,
        "device": device,
    }


def _child_params(shared: dict, run: Run, model: keras.Model) -> dict:
    first = next((layer for layer in model.layers if hasattr(layer, "kernel_initializer")), None)
    return {
        "scheme": run.scheme.name,
        "kernel_initializer": initializer_param(first.kernel_initializer) if first else "-",
        "bias_initializer": initializer_param(first.bias_initializer) if first and hasattr(first, "bias_initializer") else "-",
        "parameters": model.count_params(),
        "seed": run.seed,
        **shared,
    }


def _groups(runs: list[Run], stack: bool, size: int) -> list[list[Run]]:
    """Runs trained together: up to ``size`` runs, any schemes and seeds, in one `train_stacked` call
    (the runs of one seed share their mini-batches), or one by one."""
    if not stack:
        return [[run] for run in runs]
    return [runs[i:i + size] for i in range(0, len(runs), size)]


def run_comparison(
    spec: ComparisonSpec | Mapping | str | os.PathLike,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    resume: bool = False,
    stack: bool = True,
    progress=None,
    spec_file: str | os.PathLike | None = None,
    histograms: bool = False,
    ray: str | None = None,
) -> ComparisonOutcome:
    """Trains every (scheme, seed) run of ``spec`` and tracks it in MLflow (see `keras_initlab.tracking`).

    ``spec`` is a `ComparisonSpec`, a built-in spec's name (``"nielsen"``; `keras_initlab.spec.spec_path`), a
    spec file's path, or a spec as a mapping (in Python, ``model: {factory: build}`` may hold the factory
    function itself).

    For the MLP with plain SGD (`ComparisonSpec.stacks`) and ``stack``, all runs (up to one
    wave of `keras_initlab.training.train_stacked`'s groups at a time) train side by side
    in compiled groups, each run on its seed's mini-batches (the same for every scheme of
    a seed: a paired comparison); every other run (conv nets, factory models, any ``optimizer``)
    trains alone with `keras_initlab.training.train`. Either way each (scheme, seed)
    gets its own child run with the same params and metrics.

    Before training, each run logs the step-0 diagnostics of its model
    (`keras_initlab.diagnostics.diagnose`) and, with ``histograms``, the activation
    histograms as ``init/activations.png`` (about 0.2 s of drawing per run: off unless asked).
    The work around training runs beside it: the next group's models and diagnostics
    (the first group's diagnostics on copies of its untrained models, while it trains)
    on one thread, every MLflow request on another (`keras_initlab.tracking.TrackingWriter`; under the
    ``initlab`` command, answered by its writer process),
    both at a lower priority than training, which gets the GIL back quickly
    (`keras_initlab.tracking.quick_gil_handoff`).

    With ``ray`` (``"local"``, ``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"``, see
    `keras_initlab.cluster`), the runs train as Ray tasks instead: one per seed's stacked group (or
    per run where stacking does not apply), each on one CPU (and one GPU for ``device: gpu``); the
    workers write their child runs, this process the parent run, the progress line and the summary.
    Needs ``pip install 'keras-initlab[ray]'``.

    A run that fails (an exception, a non-finite loss) is marked FAILED with the
    reason and the others go on; ``resume`` re-opens the latest parent run of the
    same spec and trains only the runs not FINISHED there. An interrupt
    (Ctrl-C) marks the runs in flight and the parent KILLED and re-raises.

    Example:

    >>> outcome = run_comparison("nielsen")  # doctest: +SKIP
    >>> def build(scheme, input_shape, num_classes): ...         # a notebook's own model  # doctest: +SKIP
    >>> outcome = run_comparison({"name": "mine", "model": {"factory": build}, "schemes": ["he", "glorot"],
    ...                           "optimizer": "adam", "epochs": 5, "batch_size": 64})     # doctest: +SKIP

    Raises:
        BackendError: under a Keras backend other than TensorFlow, before anything is tracked.
        SpecError: for anything the spec, the data and the memory plan show to be wrong
            (`check_spec_fits`), before anything is tracked.
        TrackingUnavailableError: when the store cannot be opened or a server does not answer,
            before any run exists; `TrackingLostError` when it stops working during the comparison
            (finished runs are kept as pending records, written by ``resume``).
        ClusterUnavailableError: with ``ray``: Ray is not installed, no cluster answers at the address, or its
            workers could not reach the store; before any run exists.
    """
    require_tensorflow("initlab compare")
    if ray is not None:
        parse_address(ray)  # a malformed address before any work
    if isinstance(spec, (str, os.PathLike)):
        path = spec_path(spec)  # a built-in spec's name, or a file
        spec, spec_file = ComparisonSpec.from_file(path), path if spec_file is None else spec_file
    elif not isinstance(spec, ComparisonSpec):
        spec = ComparisonSpec.from_dict(spec)
    uri = resolve_tracking_uri(tracking_uri)
    check_reachable(uri)
    check_writable(uri)
    device = resolve_spec_device(spec)
    data = load_spec_data(spec)
    builder = check_spec_fits(spec, data, device)
    cluster = None if ray is None else _connect(ray, uri, spec)
    # MLflow on one thread, the next group's models and diagnostics on another, training on this one.
    with http_limits(), quick_gil_handoff(), _Interrupts() as interrupts, ThreadPoolExecutor(
        1, thread_name_prefix="initlab-prepare", initializer=lower_thread_priority
    ) as preparer:
        writer = TrackingWriter(uri, experiment or spec.name, spec.hash)
        failures: dict[str, str] = {}
        try:
            started = writer.submit(lambda tracker: _start(tracker, spec, resume, spec_file))
            if resume or cluster is not None or not uri.startswith("sqlite:///"):
                writer.wait()  # what to train depends on the store (units on a cluster need the parent); a server's errors first
            finished = started.result() if resume else {}
            curves = {}  # run key -> val_accuracy by epoch, of every FINISHED run
            if finished:
                curves = writer.submit(lambda tracker: tracker.metric_histories(finished, "val_accuracy")).result()
            to_train = [run for run in spec.runs() if run.key not in finished]
            groups = _units(to_train, stack and spec.stacks) if cluster else _groups(to_train, stack and spec.stacks,
                                                                                      wave_size(device))
            bar = _Progress(progress, sum(map(len, groups)), spec.epochs, [interrupts.check, writer.raise_if_lost])
            shared = shared_params(spec, device)
            if cluster is not None:
                trained, failures = _train_on_ray(spec, data, groups, writer, experiment or spec.name, shared, histograms, bar)
                curves.update(trained)
                groups = []
            for i, group in enumerate(groups):
                interrupts.check()
                writer.check()
                if i == 0:  # the first group trains at once; its step-0 diagnostics are made on copies meanwhile
                    models, children, steps = _prepare(builder, shared, group)
                    weights = [model.get_weights() for model in models]
                    initial = preparer.submit(_diagnose_copies, builder, group, weights, steps, histograms)
                else:
                    (models, children, _), initial = prepared.result(), None
                if i + 1 < len(groups):  # the next group's models and diagnostics while this one trains
                    prepared = preparer.submit(_prepare_diagnosed, builder, shared, groups[i + 1], histograms)
                failures.update(_train_group(builder, group, models, children, bar, writer, initial))
                curves.update({child.run_key: child.curve("val_accuracy") for child in children
                               if child.status == "FINISHED"})
                bar.finish(len(group))
            bar.close()
            summary, files, description = _summarize(spec, data.name, curves)  # while the last runs are written
            status = "FAILED" if failures else "FINISHED"
            writer.submit(lambda tracker: _finish_parent(tracker, files, description, status))
            tracker = writer.wait()
        except BaseException as error:  # Ctrl-C, MLflow failing, a bug
            preparer.shutdown(wait=False, cancel_futures=True)
            if isinstance(error, TrackingUnavailableError) or writer.lost is not None:
                # No more requests to a store that failed (each could wait for the HTTP limits):
                # what is left RUNNING, --resume repairs.
                raise writer.lost or error from None
            interrupted = isinstance(error, KeyboardInterrupt)
            with contextlib.suppress(BaseException):  # nothing left RUNNING that can be marked
                reason = "interrupted" if interrupted else f"aborted: {type(error).__name__}: {one_line(error)}"
                status = "KILLED" if interrupted else "FAILED"
                writer.submit(lambda tracker: tracker.kill_running_children(reason, status))
                writer.submit(lambda tracker: tracker.finish_parent(status))
                writer.wait()
            raise
        finally:
            writer.close()
            if cluster is not None:
                disconnect()
    return ComparisonOutcome(uri, tracker.experiment_id, tracker.parent_id, summary, failures, sorted(finished))


def _start(tracker: ComparisonTracker, spec: ComparisonSpec, resume: bool, spec_file) -> dict[str, str]:
    """Starts (or with ``resume`` re-opens) the parent run, named ``<spec> YYYY-MM-DD HH:MM``, and logs the
    spec; writes the runs that finished while MLflow was unreachable last time. Returns ``{run_key: run_id}``
    of the finished runs."""
    shared = {k: v for k, v in spec.to_json().items() if k not in ("name", "model")}
    shared.update(model_params(spec))
    shared = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in shared.items()}
    finished = tracker.start_parent(params=shared, resume=resume, run_name=f"{spec.name} {datetime.now():%Y-%m-%d %H:%M}")
    if resume:
        finished.update(tracker.log_pending(finished))
    tracker.save_view(runs=len(spec.runs()))
    files = {"spec.json": json.dumps(spec.to_json(), indent=2) + "\n"}
    if spec_file is not None:  # the file as written, beside what ran (overrides applied)
        files[f"original-{Path(spec_file).name}"] = Path(spec_file).read_bytes()
    tracker.log_parent_artifacts(files)
    return finished


def _prepare(builder: ModelBuilder, shared: dict, group: list[Run]) -> tuple[list[keras.Model], list[ChildRun], list]:
    """The untrained models of a group of runs, their child runs with the params and the LSUV steps, and those
    steps (`ModelBuilder.initial`)."""
    models, children, steps = [], [], []
    for run in group:
        model, lsuv_steps = builder.initial(run.scheme, run.seed)
        params = _child_params(shared, run, model)
        if lsuv_steps is not None:
            params["lsuv_examples"] = builder.lsuv_examples
        child = ChildRun(run.key, params)
        if lsuv_steps is not None:
            child.add_lsuv(lsuv_steps)
        models.append(model)
        children.append(child)
        steps.append(lsuv_steps)
    return models, children, steps


def _prepare_diagnosed(builder: ModelBuilder, shared: dict, group: list[Run], histograms: bool) -> tuple:
    """`_prepare`, and the step-0 diagnostics of the models (before they train) in their child runs."""
    models, children, steps = _prepare(builder, shared, group)
    _record_initial(children, _initial_diagnostics(builder, group, models, steps, histograms))
    return models, children, steps


def _initial_diagnostics(
    builder: ModelBuilder, group: list[Run], models: list[keras.Model], steps: list, histograms: bool
) -> list[tuple | str]:
    """Per model, ``(table, PNG or None)`` of `ModelBuilder.diagnose`, or why it has none (e.g. an initializer
    whose variance the theory lacks: the run trains without them)."""
    results = []
    for run, model, lsuv_steps in zip(group, models, steps):
        try:
            table, figure = builder.diagnose(model, lsuv_steps, f"{run.key}: activations at init" if histograms else None)
            results.append((table, None if figure is None else to_png(figure)))
        except Exception as e:
            results.append(f"{type(e).__name__}: {one_line(e)}")
    return results


def _diagnose_copies(builder: ModelBuilder, group: list[Run], weights: list[list], steps: list, histograms: bool) -> list:
    """`_initial_diagnostics` of copies of a group's models, built anew and given the ``weights`` those had before
    training (the models themselves train meanwhile)."""
    copies = []
    for run, model_weights in zip(group, weights):
        copy = builder.build(run.scheme, run.seed)
        copy.set_weights(model_weights)
        copies.append(copy)
    return _initial_diagnostics(builder, group, copies, steps, histograms)


def _record_initial(children: list[ChildRun], results: list[tuple | str]) -> None:
    """Adds `_initial_diagnostics`' results to the child runs."""
    for child, result in zip(children, results):
        if isinstance(result, str):
            child.skip_initial_diagnostics(result)
        else:
            child.add_initial_diagnostics(*result)


class EpochMetricsLogger(keras.callbacks.Callback):
    """Keras callback adding a run's per-epoch logs to its `keras_initlab.tracking.ChildRun` (written when it ends).

    Epoch ``e`` (0-based in Keras) is logged with ``step = e + 1``.
    """

    def __init__(self, child: ChildRun):
        super().__init__()
        self.child = child

    def on_epoch_end(self, epoch, logs=None):
        self.child.add_epoch(epoch + 1, logs or {})


def _train_group(
    builder: ModelBuilder, group: list[Run], models: list[keras.Model], children: list[ChildRun], bar: _Progress,
    writer: TrackingWriter, initial: Future | None = None, lanes: int | None = None,
) -> dict[str, str]:
    """Trains one group of runs and hands each, ended, to ``writer``; returns ``{run_key: failure}``.

    A group is stacked runs, any schemes and seeds (`train_stacked`, the MLP with plain SGD) or one run
    (`train`, with the spec's optimizer and loss; its model is saved compiled with them, so the
    ``.keras`` file holds the optimizer's state). A run that fails is ended FAILED with the reason;
    an interrupt ends the group's runs KILLED, with the epochs that did complete. ``initial``: the
    step-0 diagnostics being made while the group trains (`_diagnose_copies`), recorded before the
    runs are handed over (after an interrupt, only if they are done). ``lanes``: `train_stacked`'s (default: a
    lane per core).
    """
    spec, data = builder.spec, builder.data
    loggers = [EpochMetricsLogger(child) for child in children]
    callbacks = [[logger] for logger in loggers[:-1]] + [[loggers[-1], bar]]
    common = dict(epochs=spec.epochs, batch_size=spec.batch_size, device=spec.device)
    bar.start(group)
    try:
        try:
            if spec.stacks:  # one model alone is trained by `train` inside train_stacked
                outcomes = train_stacked(models, data, callbacks=callbacks, learning_rate=spec.learning_rate,
                                         seed=[run.seed for run in group], lanes=lanes, **common)
            else:
                (model,) = models
                optimizer, loss = spec.build_optimizer(), builder.loss(model)
                train(model, data, optimizer=optimizer, loss=loss, callbacks=callbacks[0], seed=group[0].seed, **common)
                model.compile(optimizer=optimizer, loss=loss)
                outcomes = [None]
        except TrackingUnavailableError:  # the store failed: the comparison stops, this group is not kept
            raise
        except Exception as e:  # the group's runs are recorded as failed; the comparison goes on
            outcomes = [e] * len(children)
    except KeyboardInterrupt:  # keep the epochs that did complete
        if initial is not None and initial.done():
            _record_initial(children, initial.result())
        for child in children:
            child.finish(None, "KILLED", "interrupted")
        writer.write(children)
        raise
    if initial is not None:
        _record_initial(children, initial.result())
    failures = {}
    for child, model, outcome in zip(children, models, outcomes):
        if isinstance(outcome, Exception):
            failures[child.run_key] = f"{type(outcome).__name__}: {outcome}"
            child.finish(None, "FAILED", failures[child.run_key])
        else:
            child.finish(model)
    writer.write(children)
    return failures


def _summarize(spec: ComparisonSpec, data_name: str, curves: Mapping[str, list[float]]) -> tuple:
    """The summary of the FINISHED runs' ``val_accuracy`` curves (``{run key: curve}``), and what the parent
    run gets of it: ``(summary rows, files, description)``: the plot and the tables; the table in Markdown."""
    keys = {run.key: run.scheme.name for run in spec.runs()}
    results: dict[str, list[dict]] = {s.name: [] for s in spec.schemes}
    for key in sorted(curves):
        results[keys[key]].append({"val_accuracy": curves[key]})
    results = {scheme: runs for scheme, runs in results.items() if runs}
    if not results:
        return [], {}, None
    summary = summarize(results)
    title = f"{spec.name}: {spec.model.describe()} on {data_name}"
    files = {"summary.csv": to_csv(summary), "summary.md": to_markdown(summary),
             "comparison.png": to_png(plot_comparison(results, title=title))}
    return summary, files, f"**{title}**, {spec.epochs} epochs, validation accuracy:\n\n{to_markdown(summary)}"


def _finish_parent(tracker: ComparisonTracker, files: dict, description: str | None, status: str) -> None:
    """The summary's files and description on the parent run, then its ``status``."""
    if files:
        tracker.log_parent_artifacts(files)
    if description is not None:
        tracker.describe_parent(description)
    tracker.finish_parent(status)


# -- on a Ray cluster ----------------------------------------------------------------------

UNIT_RETRIES = 3
"""How many times Ray runs a unit of work again after its worker died (a unit that raises is not retried)."""

CANCEL_GRACE = 30.0
"""Seconds the units in flight get after Ctrl-C to write their runs KILLED (with the epochs they finished)."""


def _connect(address: str, uri: str, spec: ComparisonSpec) -> Cluster:
    """Connects to the Ray cluster at ``address`` (`keras_initlab.cluster.connect`), before any run exists, and
    checks that its workers can do the work: reach the store ``uri``, and have a GPU if ``spec`` asks for one (a task
    asking for a GPU that no node has would wait forever). Disconnects again when they cannot.

    Raises:
        ClusterUnavailableError: no cluster answers there, or its workers cannot reach the store.
        SpecError: ``device: gpu`` and the cluster has no GPU.
    """
    cluster = connect(address)
    try:
        check_store_reachable(uri, cluster)
        if spec.device == "gpu" and not cluster.resources.get("GPU"):
            raise SpecError(f"device: 'gpu', but the Ray cluster at {address} has no GPU; use auto or cpu, or one "
                            "with GPUs")
    except Exception:
        disconnect()
        raise
    return cluster


def _units(runs: list[Run], stack: bool) -> list[list[Run]]:
    """A comparison's units of work on a cluster: with stacking, all schemes of one seed (one `train_stacked` group
    per task); otherwise one run per task."""
    if not stack:
        return [[run] for run in runs]
    seeds = list(dict.fromkeys(run.seed for run in runs))
    return [[run for run in runs if run.seed == seed] for seed in seeds]


def _train_on_ray(spec: ComparisonSpec, data: Dataset, units: list[list[Run]], writer: TrackingWriter, experiment: str,
                  shared: dict, histograms: bool, bar: _Progress) -> tuple[dict, dict]:
    """Runs the ``units`` as Ray tasks (`_train_unit`), the dataset sent once to the object store; the progress
    line follows the epochs they report. Returns ``({run key: val_accuracy curve} of the FINISHED runs,
    {run key: failure})``. On Ctrl-C each unit in flight is interrupted (a `KeyboardInterrupt` in its task: it
    writes its runs KILLED with the epochs they finished, as `_train_group` does here) and waited for up to
    `CANCEL_GRACE` seconds; on any other error, and after that, the tasks left are stopped."""
    import ray
    from ray.util.queue import Queue

    epochs = Queue(actor_options={"num_cpus": 0})  # Ray's own actor: takes no CPU, and imports nothing of ours
    data_ref = ray.put(data)
    tracker = writer.wait()
    gpus = 1 if spec.device == "gpu" else 0
    task = ray.remote(_train_unit).options(num_cpus=1, num_gpus=gpus, max_retries=UNIT_RETRIES)
    pending = {task.remote(spec, data_ref, [run.key for run in unit], tracker.uri, experiment, tracker.parent_id, shared,
                           histograms, epochs, i): unit for i, unit in enumerate(units)}
    curves, failures = {}, {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5)
            waiting = epochs.qsize()
            for index, epoch, logs in epochs.get_nowait_batch(waiting) if waiting else []:
                bar.report(units[index], epoch, logs)
            for ref in ready:
                unit = pending.pop(ref)
                try:
                    results = ray.get(ref)
                except Exception as e:  # the worker died more often than retried, or the unit could not start
                    results = {run.key: ("FAILED", f"{type(e).__name__}: {one_line(e)}", []) for run in unit}
                for key, (status, failure, curve) in results.items():
                    if status == "FINISHED":
                        curves[key] = curve
                    elif failure is not None:
                        failures[key] = failure
                bar.finish(len(unit))
            for check in bar.checks:
                check()
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)
        ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_GRACE)
        raise
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
    return curves, failures


def _train_unit(spec: ComparisonSpec, data: Dataset, keys: list[str], uri: str, experiment: str, parent_id: str,
                shared: dict, histograms: bool, epochs, index: int) -> dict:
    """One unit of work on a Ray worker: builds its runs' models, diagnoses them, trains them and writes each as a
    child run of ``parent_id`` (child runs of these keys left by an earlier attempt are replaced). Epochs are
    put on ``epochs`` (a `ray.util.queue.Queue` the driver drains) as ``(index, epoch, logs)``. Returns
    ``{run key: (status, failure or None, val_accuracy curve)}``."""
    import ray

    # Ray stops a unit on Ctrl-C with `_thread.interrupt_main`, which does nothing where SIGINT is ignored: a worker
    # of a cluster started from a shell's background job (`ray start ... &`, nohup) inherits that.
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    builder = ModelBuilder(spec, data)
    runs = {run.key: run for run in spec.runs()}
    group = [runs[key] for key in keys]
    writer = TrackingWriter(uri, experiment, spec.hash)
    try:
        writer.submit(lambda tracker: tracker.join_parent(parent_id, keys))
        models, children, steps = _prepare(builder, shared, group)
        _record_initial(children, _initial_diagnostics(builder, group, models, steps, histograms))
        bar = _EpochReporter(epochs, index, len(group), spec.epochs, [writer.raise_if_lost])
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)  # a lane per CPU it was given
        failures = _train_group(builder, group, models, children, bar, writer, lanes=max(1, int(cpus)))
        writer.wait()
    finally:
        writer.close()
    return {child.run_key: (child.status, failures.get(child.run_key), child.curve("val_accuracy")) for child in children}


class _EpochReporter(_Progress):
    """A unit's progress on a worker: every epoch, with the logs of its last run, onto the driver's queue."""

    def __init__(self, queue, index: int, runs: int, epochs: int, checks):
        super().__init__(None, runs, epochs, checks)
        self.queue, self.index = queue, index

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        event = (self.index, epoch, {key: float(value) for key, value in (logs or {}).items()})
        # Sent without waiting for it: a task waiting on Ray (`Queue.put_nowait` does) lends its CPU back to the
        # scheduler, which would start another unit, and a worker importing TensorFlow, on it meanwhile.
        self.queue.actor.put_nowait.remote(event)
