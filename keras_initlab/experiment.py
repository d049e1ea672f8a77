"""Comparison specs: a YAML/JSON file describing a sweep of runs over schemes x seeds.

Example (``scripts/configs/nielsen.yaml``)::

    name: nielsen
    dataset: mnist-10k
    model: {sizes: [784, 30, 10], activation: sigmoid, output: sigmoid}
    schemes: [nielsen-default, nielsen-large]
    seeds: [0, 1, 2]
    epochs: 30
    batch_size: 10
    learning_rate: 0.1
    l2_lambda: 5.0
    device: auto

Optional keys: ``data_dir`` (for ``dataset: mnist``) and ``subset: {train: N, val: M}``
(the first N/M examples, for quick runs). A scheme is a built-in name or
``{name: NAME, kernel: INITIALIZER, bias: INITIALIZER}`` with initializers as
Keras serializes them (``keras.initializers.serialize``) or as registered names.
Everything is checked before anything trains; errors name the key path, e.g.
``schemes[2]: unknown scheme 'sparce10'; known: ...``.

>>> spec = ComparisonSpec.from_dict({"name": "demo", "schemes": ["he"], "seeds": [0]})
>>> [(r.scheme, r.seed) for r in spec.runs()]
[('he', 0)]
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import keras

from keras_initlab.models import OUTPUTS, SchemeLike
from keras_initlab.schemes import list_schemes
from keras_initlab.training import DEVICES


class SpecError(ValueError):
    """A comparison spec is invalid; the message starts with the key path."""


@dataclasses.dataclass(frozen=True)
class SchemeSpec:
    """One scheme of a comparison: a built-in name, or a name with explicit initializer configs."""

    name: str
    kernel: dict | str | None = None
    bias: dict | str | None = None

    def initializers(self) -> SchemeLike:
        """What `keras_initlab.models.build_mlp` takes as ``scheme``."""
        if self.kernel is None:
            return self.name
        return keras.initializers.get(self.kernel), keras.initializers.get(self.bias)

    def to_json(self) -> dict | str:
        return self.name if self.kernel is None else {"name": self.name, "kernel": self.kernel, "bias": self.bias}


@dataclasses.dataclass(frozen=True)
class Run:
    """One child run of a comparison."""

    scheme: SchemeSpec
    seed: int

    @property
    def key(self) -> str:
        return f"{self.scheme.name}/seed={self.seed}"


@dataclasses.dataclass(frozen=True)
class ComparisonSpec:
    """A validated comparison: dataset, model, schemes x seeds and the training hyperparameters."""

    name: str
    schemes: tuple[SchemeSpec, ...]
    seeds: tuple[int, ...] = (0,)
    dataset: str = "mnist-10k"
    data_dir: str | None = None
    subset: tuple[int, int] | None = None
    sizes: tuple[int, ...] = (784, 30, 10)
    activation: str = "sigmoid"
    output: str = "sigmoid"
    epochs: int = 30
    batch_size: int = 10
    learning_rate: float = 0.1
    l2_lambda: float = 0.0
    device: str = "auto"

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ComparisonSpec:
        """Reads a ``.yaml``/``.yml`` or ``.json`` spec."""
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"{path}: no such spec file")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            try:
                raw = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise SpecError(f"{path}: not valid YAML: {e}") from None
        elif path.suffix == ".json":
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as e:
                raise SpecError(f"{path}: not valid JSON: {e}") from None
        else:
            raise SpecError(f"{path}: a spec must be a .yaml, .yml or .json file")
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Mapping) -> ComparisonSpec:
        """Validates a parsed spec; raises `SpecError` naming the first bad key path."""
        _expect(raw, Mapping, "spec", "a mapping")
        unknown = sorted(set(raw) - _TOP_KEYS)
        if unknown:
            raise SpecError(f"{unknown[0]}: unknown key; allowed: {', '.join(sorted(_TOP_KEYS))}")
        for key in ("name", "schemes"):
            if key not in raw:
                raise SpecError(f"{key}: required")
        name = _name(raw["name"], "name")
        model = raw.get("model", {})
        _expect(model, Mapping, "model", "a mapping")
        unknown = sorted(set(model) - _MODEL_KEYS)
        if unknown:
            raise SpecError(f"model.{unknown[0]}: unknown key; allowed: {', '.join(sorted(_MODEL_KEYS))}")
        defaults = cls.__dataclass_fields__
        sizes = tuple(_int_list(model.get("sizes", list(defaults["sizes"].default)), "model.sizes", minimum=1, min_len=2))
        activation = _expect(model.get("activation", "sigmoid"), str, "model.activation", "an activation name")
        try:
            keras.activations.get(activation)
        except ValueError:
            raise SpecError(f"model.activation: unknown activation {activation!r}") from None
        output = model.get("output", "sigmoid")
        if output not in OUTPUTS:
            raise SpecError(f"model.output: must be one of {', '.join(OUTPUTS)}; got {output!r}")
        dataset = _expect(raw.get("dataset", "mnist-10k"), str, "dataset", "a dataset name")
        data_dir = raw.get("data_dir")
        if data_dir is not None:
            _expect(data_dir, str, "data_dir", "a directory path")
        subset = raw.get("subset")
        if subset is not None:
            _expect(subset, Mapping, "subset", "a mapping {train: N, val: M}")
            if set(subset) != {"train", "val"}:
                raise SpecError(f"subset: must have exactly the keys train and val; got {sorted(subset)}")
            subset = (_int(subset["train"], "subset.train", 1), _int(subset["val"], "subset.val", 1))
        seeds = tuple(_int_list(raw.get("seeds", [0]), "seeds", minimum=0, min_len=1))
        if len(set(seeds)) != len(seeds):
            raise SpecError(f"seeds: must not repeat; got {list(seeds)}")
        schemes = tuple(_scheme(s, f"schemes[{i}]") for i, s in enumerate(_list(raw["schemes"], "schemes", 1)))
        names = [s.name for s in schemes]
        if len(set(names)) != len(names):
            raise SpecError(f"schemes: names must not repeat; got {names}")
        device = raw.get("device", "auto")
        if device not in DEVICES:
            raise SpecError(f"device: must be one of {', '.join(DEVICES)}; got {device!r}")
        return cls(
            name=name,
            schemes=schemes,
            seeds=seeds,
            dataset=dataset,
            data_dir=data_dir,
            subset=subset,
            sizes=sizes,
            activation=activation,
            output=output,
            epochs=_int(raw.get("epochs", 30), "epochs", 1),
            batch_size=_int(raw.get("batch_size", 10), "batch_size", 1),
            learning_rate=_number(raw.get("learning_rate", 0.1), "learning_rate", positive=True),
            l2_lambda=_number(raw.get("l2_lambda", 0.0), "l2_lambda", positive=False),
            device=device,
        )

    def replace(self, **changes) -> ComparisonSpec:
        """A copy with some fields changed (command-line overrides), validated again."""
        return ComparisonSpec.from_dict({**self.to_json(), **changes})

    def to_json(self) -> dict:
        """The spec as plain data, in the file format (what is hashed and logged)."""
        out = {
            "name": self.name,
            "dataset": self.dataset,
            "model": {"sizes": list(self.sizes), "activation": self.activation, "output": self.output},
            "schemes": [s.to_json() for s in self.schemes],
            "seeds": list(self.seeds),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "l2_lambda": self.l2_lambda,
            "device": self.device,
        }
        if self.data_dir is not None:
            out["data_dir"] = self.data_dir
        if self.subset is not None:
            out["subset"] = {"train": self.subset[0], "val": self.subset[1]}
        return out

    @property
    def hash(self) -> str:
        """A short digest of the spec's content: equal specs, equal hashes."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def runs(self) -> list[Run]:
        """Every (scheme, seed) pair, seeds outermost (the order in which runs are stacked)."""
        return [Run(scheme, seed) for seed in self.seeds for scheme in self.schemes]


_TOP_KEYS = {f.name for f in dataclasses.fields(ComparisonSpec)} - {"sizes", "activation", "output"} | {"model"}
_MODEL_KEYS = {"sizes", "activation", "output"}


def _expect(value, kind, path: str, what: str):
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise SpecError(f"{path}: must be {what}; got {value!r}")
    return value


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _name(value, path: str) -> str:
    """A spec or scheme name: it becomes part of MLflow metric names and of file names."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise SpecError(
            f"{path}: must be a name of letters, digits, '_', '.', '-' starting with a letter or digit; got {value!r}"
        )
    return value


def _int(value, path: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{path}: must be an integer >= {minimum}; got {value!r}")
    return value


def _number(value, path: str, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"{path}: must be a finite number; got {value!r}")
    if value < 0 or (positive and value == 0):
        raise SpecError(f"{path}: must be {'> 0' if positive else '>= 0'}; got {value!r}")
    return float(value)


def _list(value, path: str, min_len: int) -> list:
    if not isinstance(value, list) or len(value) < min_len:
        raise SpecError(f"{path}: must be a list of at least {min_len} item(s); got {value!r}")
    return value


def _int_list(value, path: str, minimum: int, min_len: int) -> list[int]:
    return [_int(v, f"{path}[{i}]", minimum) for i, v in enumerate(_list(value, path, min_len))]


def _scheme(value, path: str) -> SchemeSpec:
    known = list_schemes()
    if isinstance(value, str):
        if value not in known:
            raise SpecError(f"{path}: unknown scheme {value!r}; known: {', '.join(known)}")
        return SchemeSpec(value)
    _expect(value, Mapping, path, "a scheme name or a mapping {name, kernel, bias}")
    if set(value) != {"name", "kernel", "bias"}:
        raise SpecError(f"{path}: an explicit scheme needs exactly the keys name, kernel, bias; got {sorted(value)}")
    name = _name(value["name"], f"{path}.name")
    if name in known:
        raise SpecError(f"{path}.name: {name!r} is a built-in scheme; give an explicit scheme its own name")
    for part in ("kernel", "bias"):
        config = value[part]
        _expect(config, (str, Mapping), f"{path}.{part}", "an initializer name or Keras config")
        try:
            init = keras.initializers.get(dict(config) if isinstance(config, Mapping) else config)
        except (ValueError, TypeError) as e:
            raise SpecError(f"{path}.{part}: not a Keras initializer: {e}") from None
        if init is None:
            raise SpecError(f"{path}.{part}: not a Keras initializer: {config!r}")
    return SchemeSpec(name, _plain(value["kernel"]), _plain(value["bias"]))


def _plain(config):
    return json.loads(json.dumps(config))


# -- models, data and diagnostics of a spec ------------------------------------------------

DIAGNOSTIC_EXAMPLES = 1000
"""How many validation examples (the first ones) the diagnostics at initialization use."""


def load_spec_data(spec: ComparisonSpec):
    """The spec's dataset (`keras_initlab.data.load_dataset`), cut to ``subset`` when it has one."""
    from keras_initlab.data import load_dataset

    data = load_dataset(spec.dataset, data_dir=spec.data_dir)
    return data if spec.subset is None else data.subset(*spec.subset)


def build_model(spec: ComparisonSpec, scheme: SchemeSpec, seed: int, n_train: int) -> keras.Model:
    """The untrained model of one (scheme, seed) run of ``spec``."""
    from keras_initlab.models import build_mlp

    return build_mlp(
        spec.sizes, spec.activation, spec.output, scheme.initializers(),
        l2_lambda=spec.l2_lambda, n_train=n_train, seed=seed,
    )


def diagnostic_batch(data) -> tuple:
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

    >>> tables = diagnose_spec(ComparisonSpec.from_file("scripts/configs/deep-tanh.yaml"), "out")  # doctest: +SKIP
    """
    from keras_initlab.diagnostics import diagnose_with_histograms, plot_preactivation_std_by_depth

    seed = spec.seeds[0] if seed is None else seed
    data = load_spec_data(spec)
    batch = diagnostic_batch(data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {}
    for i, scheme in enumerate(spec.schemes):
        model = build_model(spec, scheme, seed, data.n_train)
        title = f"{scheme.name} (seed {seed}): activations at initialization"
        try:
            tables[scheme.name], figure = diagnose_with_histograms(model, *batch, title=title)
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


class _Progress(keras.callbacks.Callback):
    """One status line: runs done / total and the current run's (or group's) epoch."""

    def __init__(self, stream, total: int):
        super().__init__()
        self.stream, self.total, self.done, self.label, self.reporting = stream, total, 0, "", ""
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def start(self, label: str, reporting: str) -> None:
        """A new group: ``label`` names its runs, ``reporting`` the run whose logs this callback sees."""
        self.label, self.reporting = label, reporting

    def on_epoch_end(self, epoch, logs=None):
        if self.stream is None:
            return
        line = f"[{self.done}/{self.total} runs done] {self.label}: epoch {epoch + 1}/{self.params['epochs']}"
        if logs and "val_accuracy" in logs:
            line += f"  ({self.reporting}: val_accuracy {logs['val_accuracy']:.4f})"
        self.stream.write(("\r" + line.ljust(100)) if self.tty else line + "\n")
        self.stream.flush()

    def finish(self, runs: int) -> None:
        self.done += runs
        if self.stream is not None and self.tty:
            self.stream.write("\n")


def _child_params(spec: ComparisonSpec, run: Run, model: keras.Model, device: str) -> dict:
    from keras_initlab.tracking import initializer_param

    first = next(layer for layer in model.layers if hasattr(layer, "kernel_initializer"))
    return {
        "scheme": run.scheme.name,
        "kernel_initializer": initializer_param(first.kernel_initializer),
        "bias_initializer": initializer_param(first.bias_initializer),
        "sizes": json.dumps(list(spec.sizes)),
        "activation": spec.activation,
        "output": spec.output,
        "seed": run.seed,
        "dataset": spec.dataset if spec.subset is None else f"{spec.dataset}[:{spec.subset[0]},:{spec.subset[1]}]",
        "epochs": spec.epochs,
        "batch_size": spec.batch_size,
        "learning_rate": spec.learning_rate,
        "l2_lambda": spec.l2_lambda,
        "device": device,
    }


def _groups(runs: list[Run], stack: bool) -> list[list[Run]]:
    """Runs trained together: all schemes of one seed (they share the data order), or one by one."""
    if not stack:
        return [[run] for run in runs]
    by_seed: dict[int, list[Run]] = {}
    for run in runs:
        by_seed.setdefault(run.seed, []).append(run)
    return list(by_seed.values())


def run_comparison(
    spec: ComparisonSpec,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    resume: bool = False,
    stack: bool = True,
    progress=None,
    spec_file: str | os.PathLike | None = None,
) -> ComparisonOutcome:
    """Trains every (scheme, seed) run of ``spec`` and tracks it in MLflow (see `keras_initlab.tracking`).

    With ``stack`` the schemes of one seed train side by side in one compiled
    model (`keras_initlab.stacked.train_stacked`: the same mini-batches for every
    scheme, a paired comparison); otherwise one model at a time. Either way each
    (scheme, seed) gets its own child run with the same params and metrics.

    A run that fails (an exception, a non-finite loss) is marked FAILED with the
    reason and the others go on; ``resume`` re-opens the latest parent run of the
    same spec and trains only the runs not FINISHED there. An interrupt
    (Ctrl-C) marks the runs in flight and the parent KILLED and re-raises.

    Example:

    >>> outcome = run_comparison(ComparisonSpec.from_file("scripts/configs/nielsen.yaml"))  # doctest: +SKIP
    """
    from keras_initlab.diagnostics import diagnose_with_histograms
    from keras_initlab.stacked import train_stacked
    from keras_initlab.tracking import (
        ComparisonTracker, EpochMetricsLogger, check_reachable, resolve_tracking_uri,
    )
    from keras_initlab.training import resolve_device, train

    uri = resolve_tracking_uri(tracking_uri)
    check_reachable(uri)
    device = resolve_device(spec.device)
    data = load_spec_data(spec)
    tracker = ComparisonTracker(uri, experiment or spec.name, spec.hash)
    shared = {k: v for k, v in spec.to_json().items() if k not in ("name", "model")}
    shared.update(sizes=json.dumps(list(spec.sizes)), activation=spec.activation, output=spec.output)
    shared = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in shared.items()}
    finished = tracker.start_parent(params=shared, resume=resume)
    files = {"spec.json": json.dumps(spec.to_json(), indent=2) + "\n"}
    if spec_file is not None:  # the file as written, beside what ran (overrides applied)
        files[f"original-{Path(spec_file).name}"] = Path(spec_file).read_bytes()
    tracker.log_parent_artifacts(files)

    pending = [run for run in spec.runs() if run.key not in finished]
    batch = diagnostic_batch(data)
    bar = _Progress(progress, len(pending))
    failures: dict[str, str] = {}
    loggers: list = []
    try:
        for group in _groups(pending, stack):
            models, run_ids, loggers = [], [], []
            for run in group:
                model = build_model(spec, run.scheme, run.seed, data.n_train)
                run_id = tracker.start_child(run.key, _child_params(spec, run, model, device))
                try:
                    table, figure = diagnose_with_histograms(model, *batch, title=f"{run.key}: activations at init")
                except TypeError as e:  # an explicit scheme's initializer whose variance the theory lacks
                    tracker.skip_initial_diagnostics(run_id, str(e))
                else:
                    tracker.log_initial_diagnostics(run_id, table, figure)
                models.append(model)
                run_ids.append(run_id)
                loggers.append(EpochMetricsLogger(tracker, run_id))
            common = dict(epochs=spec.epochs, batch_size=spec.batch_size, learning_rate=spec.learning_rate,
                          seed=group[0].seed, device=spec.device)
            bar.start(", ".join(run.key for run in group), group[-1].key)
            try:
                if len(group) > 1:
                    callbacks = [[logger] for logger in loggers[:-1]] + [[loggers[-1], bar]]
                    outcomes = train_stacked(models, data, callbacks=callbacks, **common)
                else:
                    outcomes = [train(models[0], data, callbacks=[loggers[0], bar], **common)]
            except Exception as e:  # the group's runs are recorded as failed; the comparison goes on
                outcomes = [e] * len(group)
            for run, model, run_id, logger, outcome in zip(group, models, run_ids, loggers, outcomes):
                logger.flush()
                if isinstance(outcome, Exception):
                    failures[run.key] = f"{type(outcome).__name__}: {outcome}"
                    tracker.fail_child(run_id, failures[run.key])
                else:
                    tracker.finish_child(run_id, model)
            bar.finish(len(group))
        summary = _log_summary(tracker, spec, data.name)
    except BaseException as error:  # Ctrl-C, or MLflow failing: nothing is left RUNNING
        for logger in loggers:  # keep the epochs that did complete
            with contextlib.suppress(Exception):
                logger.flush()
        interrupted = isinstance(error, KeyboardInterrupt)
        with contextlib.suppress(Exception):
            tracker.kill_running_children("interrupted" if interrupted else f"aborted: {type(error).__name__}: {error}")
            tracker.finish_parent("KILLED" if interrupted else "FAILED")
        raise
    tracker.finish_parent("FAILED" if failures else "FINISHED")
    return ComparisonOutcome(uri, tracker.experiment_id, tracker.parent_id, summary, failures, sorted(finished))


def _log_summary(tracker, spec: ComparisonSpec, data_name: str) -> list:
    """Summarizes the FINISHED children's histories into the parent: plot, tables, key metrics."""
    from keras_initlab.report import plot_comparison, summarize, to_csv, to_markdown
    from keras_initlab.tracking import RUN_KEY_TAG

    results: dict[str, list[dict]] = {}
    for child in sorted(tracker.children(), key=lambda c: c.data.tags.get(RUN_KEY_TAG, "")):
        if child.info.status == "FINISHED":
            history = {"val_accuracy": tracker.metric_history(child.info.run_id, "val_accuracy")}
            results.setdefault(child.data.params["scheme"], []).append(history)
    results = {s.name: results[s.name] for s in spec.schemes if s.name in results}
    summary = summarize(results) if results else []
    if summary:
        title = f"{spec.name}: {spec.sizes} {spec.activation} on {data_name}"
        tracker.log_parent_artifacts(
            {"summary.csv": to_csv(summary), "summary.md": to_markdown(summary)},
            figures={"comparison.png": plot_comparison(results, title=title)},
        )
        metrics = {}
        for row in summary:
            metrics[f"val_accuracy_epoch1.{row.scheme}"] = row.epoch_1
            if row.epoch_5 is not None:
                metrics[f"val_accuracy_epoch5.{row.scheme}"] = row.epoch_5
            metrics[f"final_val_accuracy.{row.scheme}"] = row.final
            for level in ("90", "95"):
                value = getattr(row, f"epochs_to_{level}")
                if value is not None:
                    metrics[f"epochs_to_{level}pct.{row.scheme}"] = value
        tracker.log_parent_metrics(metrics)
    return summary
