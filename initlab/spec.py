"""Comparison specs: a YAML/JSON file describing a sweep of runs over schemes x seeds.

Example (the built-in spec ``nielsen``: ``initlab spec nielsen``)::

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

``dataset`` is a name (``mnist-10k``, ``mnist``, ``keras:NAME`` for Keras' own data sets in its cache, a
TensorFlow Datasets name) or ``{npz: PATH}``, an ``.npz`` in Keras' layout (relative to the spec file's
folder; `keras_initlab.Dataset.from_npz`). Optional keys: ``data_dir`` (for ``dataset: mnist`` or a TFDS name)
and ``subset: {train: N, val: M}`` (the first N/M examples, for quick runs). A scheme is a built-in name or
``{name: NAME, kernel: INITIALIZER, bias: INITIALIZER}`` with initializers as
Keras serializes them (``keras.initializers.serialize``) or as registered names; no number in
them may be NaN or infinite.
Absent keys take the defaults of `ComparisonSpec`'s fields.

``model`` is one of (`MLPModel`, `ConvNetModel`, `FactoryModel`)::

    model: {sizes: [784, 30, 10], activation: sigmoid, output: sigmoid}   # kind: mlp, the default
    model: {kind: convnet, filters: [8, 16], activation: relu, output: softmax}
    model: {factory: models/small_cnn.py:build}      # relative to the spec file's folder
    model: {factory: my_package.models:build}        # importable

``optimizer`` is a Keras optimizer name (``adam``) or config (``{class_name: SGD, config:
{learning_rate: 0.01, momentum: 0.9}}``), built by Keras' own deserialization; without it,
plain SGD with ``learning_rate`` (giving both is an error). Either learning rate must be positive
and finite (a schedule's: at its first step). ``loss`` (a Keras loss name or
config) is for factory models; their default is sparse categorical cross-entropy on the
model's probabilities. The built-in models' loss follows their ``output``. ``lsuv_examples``
(default `LSUV_EXAMPLES`) is the batch of the ``lsuv`` scheme: the first training examples.
``watch`` (``true``, the default; ``false``; or ``{every: N}``) measures every Dense/Conv layer's statistics
after every (N-th) epoch, ``layers/layer<k>/<stat>`` (`keras_initlab.watch`).

**Built-in specs** ship in the package and are addressed by name: ``initlab compare nielsen``
(`initlab.spec_files.spec_path` has the rule for a name and a file that could both match).

A spec is small and bounded: at most `initlab.spec_files.MAX_SPEC_BYTES`, no YAML aliases (a "billion laughs"
file would expand to gigabytes), no key given twice, names of at most `MAX_NAME_LENGTH` characters (they become
MLflow metric and file names), and at most `MAX_SEEDS` seeds, `MAX_SCHEMES` schemes,
`MAX_EPOCHS` epochs, `MAX_LAYERS` layers of at most `MAX_UNITS` units, `MAX_RUNS` runs.

Everything is checked before anything runs, with the argument checks of
`keras_initlab.checks`; errors name the key path, e.g.
``schemes[2]: unknown scheme 'sparce10'; known: ...``, showing at most
`initlab.messages.MAX_SHOWN` characters of a value (`initlab.messages.shown`). A value of the wrong type is a
`SpecTypeError` (a `SpecError` and a `TypeError`), any other bad value a `SpecError`
(a `ValueError`); both are defined with the spec files' reading (`initlab.spec_files`). This module
imports no trainer: TensorFlow only through Keras.

>>> spec = ComparisonSpec.from_dict({"name": "demo", "schemes": ["he"], "seeds": [0]})
>>> [(r.scheme.name, r.seed) for r in spec.runs()]
[('he', 0)]
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import keras

from initlab.messages import shown, shown_text
from initlab.spec_files import SpecError, SpecTypeError, read_spec_file
from initlab.spec_keras import check_factory, check_initializer, check_optimizer, keras_config, plain
from initlab.spec_models import ConvNetModel, FactoryModel, MLPModel, ModelSpec
from keras_initlab.backend import DEVICES
from keras_initlab.checks import check_choice, check_int, check_ints, check_list, check_number, check_str, fail
from keras_initlab.models import OUTPUTS
from keras_initlab.schemes import SchemeLike, list_schemes

MAX_NAME_LENGTH = 100
"""Longest spec, scheme or dataset name: names go into MLflow metric keys (at most 250 characters) and file names."""
MAX_SEEDS = 1000
MAX_SCHEMES = 100
MAX_RUNS = 10_000
"""Most (scheme, seed) runs in one comparison: MLflow returns at most 10,000 runs per search."""
MAX_EPOCHS = 100_000
MAX_LAYERS = 1000
MAX_UNITS = 1_000_000
MAX_SEED = 2**32 - 1
LSUV_EXAMPLES = 512
"""Default batch of the ``lsuv`` scheme (the ``lsuv_examples`` key)."""


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
class NpzFile:
    """``dataset: {npz: PATH}``: an ``.npz`` in Keras' layout (`keras_initlab.Dataset.from_npz`), its path as written
    (relative to the spec file's folder, like a factory file's)."""

    npz: str

    def to_json(self) -> dict:
        return {"npz": self.npz}

    def path(self, base_dir: Path | None) -> Path:
        """The file: ``npz`` from ``base_dir`` (the spec file's folder; default the current one)."""
        return (base_dir or Path.cwd()) / Path(self.npz).expanduser()


@dataclasses.dataclass(frozen=True)
class ComparisonSpec:
    """A validated comparison: dataset, model, schemes x seeds and the training hyperparameters.

    The field defaults are the defaults of the spec file format.
    """

    name: str
    schemes: tuple[SchemeSpec, ...]
    seeds: tuple[int, ...] = (0,)
    dataset: str | NpzFile = "mnist-10k"
    """A `keras_initlab.load_dataset` name (``mnist-10k``, ``mnist``, ``keras:NAME``, a TFDS name) or an `NpzFile`."""
    data_dir: str | None = None
    subset: tuple[int, int] | None = None
    model: ModelSpec = MLPModel()
    epochs: int = 30
    batch_size: int = 10
    learning_rate: float | None = 0.1
    """Plain SGD's step size; ``None`` when ``optimizer`` is given."""
    optimizer: str | dict | None = None
    loss: str | dict | None = None
    l2_lambda: float = 0.0
    device: str = "auto"
    lsuv_examples: int = LSUV_EXAMPLES
    """How many training examples (the first ones) the ``lsuv`` scheme rescales on; at most the training set."""
    watch: int = 1
    """Every how many epochs the layers' statistics are measured (`keras_initlab.watch`); 0: never (``watch:
    false``)."""
    base_dir: Path | None = dataclasses.field(default=None, compare=False)
    """Where a factory file's relative path starts: the spec file's folder (default: the current one)."""

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ComparisonSpec:
        """Reads a ``.yaml``/``.yml`` or ``.json`` spec (`initlab.spec_files.read_spec_file`) and validates it."""
        return cls.from_dict(read_spec_file(path), base_dir=Path(path).parent)

    @classmethod
    def from_dict(cls, raw: Mapping | object, base_dir: str | os.PathLike | None = None) -> ComparisonSpec:
        """Validates a parsed spec (a mapping; anything else is refused); raises `SpecError` (or
        `SpecTypeError`) naming the first bad key path.

        ``base_dir`` is where a factory file's relative path starts (default: the current folder).
        """
        with _key_paths():
            return cls._parse(raw, None if base_dir is None else Path(base_dir))

    @classmethod
    def _parse(cls, raw, base_dir: Path | None) -> ComparisonSpec:
        default: dict[str, Any] = {field.name: field.default for field in dataclasses.fields(cls)}
        _mapping(raw, "spec", "a mapping of spec keys")
        _known_keys(raw, _TOP_KEYS, "")
        for key in ("name", "schemes"):
            if key not in raw:
                raise SpecError(f"{key}: required")
        model = _model(raw.get("model", {}), base_dir)
        seeds = check_ints(
            raw.get("seeds", list(default["seeds"])), "seeds", minimum=0, maximum=MAX_SEED, min_len=1, max_len=MAX_SEEDS
        )
        if len(set(seeds)) != len(seeds):
            raise SpecError(f"seeds: must not repeat; got {shown(seeds)}")
        listed = check_list(raw["schemes"], "schemes", min_len=1, max_len=MAX_SCHEMES)
        schemes = [_scheme(s, f"schemes[{i}]") for i, s in enumerate(listed)]
        names = [s.name for s in schemes]
        if len(set(names)) != len(names):
            raise SpecError(f"schemes: names must not repeat; got {shown(names)}")
        if len(seeds) * len(schemes) > MAX_RUNS:
            raise SpecError(
                f"seeds: {len(seeds)} seeds x {len(schemes)} schemes = {len(seeds) * len(schemes)} runs; "
                f"a comparison has at most {MAX_RUNS}"
            )
        data_dir = raw.get("data_dir", default["data_dir"])
        optimizer = check_optimizer(raw.get("optimizer"))
        if optimizer is not None and "learning_rate" in raw:
            raise SpecError(
                "learning_rate: give it inside the optimizer's config "
                "(optimizer: {class_name: SGD, config: {learning_rate: ...}}), not beside an optimizer"
            )
        learning_rate = (
            None
            if optimizer is not None
            else check_number(raw.get("learning_rate", default["learning_rate"]), "learning_rate", positive=True)
        )
        loss, _ = keras_config(raw.get("loss"), "loss", keras.losses.get, "a loss")
        if loss is not None and not isinstance(model, FactoryModel):
            raise SpecError(
                f"loss: only for a factory model; the loss of the built-in {model.describe()} follows model.output"
            )
        l2_lambda = check_number(raw.get("l2_lambda", default["l2_lambda"]), "l2_lambda", minimum=0)
        if l2_lambda and isinstance(model, FactoryModel):
            raise SpecError(
                "l2_lambda: a factory builds its own layers; give them kernel_regularizer=keras.regularizers.L2(...)"
            )
        return cls(
            name=_name(raw["name"], "name"),
            schemes=tuple(schemes),
            seeds=tuple(seeds),
            dataset=_dataset(raw.get("dataset", default["dataset"]), data_dir, base_dir),
            data_dir=None if data_dir is None else check_str(data_dir, "data_dir", "a directory path"),
            subset=_subset(raw.get("subset", default["subset"])),
            model=model,
            epochs=check_int(raw.get("epochs", default["epochs"]), "epochs", minimum=1, maximum=MAX_EPOCHS),
            batch_size=check_int(raw.get("batch_size", default["batch_size"]), "batch_size", minimum=1),
            learning_rate=learning_rate,
            optimizer=optimizer,
            loss=loss,
            l2_lambda=l2_lambda,
            device=check_choice(raw.get("device", default["device"]), "device", DEVICES),
            lsuv_examples=check_int(raw.get("lsuv_examples", default["lsuv_examples"]), "lsuv_examples", minimum=2),
            watch=_watch(raw.get("watch", True)),
            base_dir=base_dir,
        )

    def replace(self, **changes) -> ComparisonSpec:
        """A copy with some fields changed (command-line overrides), validated again."""
        raw = self.to_json()
        if isinstance(self.model, FactoryModel):  # a function given in Python stays that function
            raw["model"] = {"factory": self.model.factory}
        return ComparisonSpec.from_dict({**raw, **changes}, base_dir=self.base_dir)

    @property
    def stacks(self) -> bool:
        """Whether the runs can train stacked (`keras_initlab.training.train_stacked`): the MLP with plain SGD."""
        return isinstance(self.model, MLPModel) and self.optimizer is None

    def build_optimizer(self) -> keras.optimizers.Optimizer:
        """A new optimizer for one run: ``optimizer`` through Keras' deserialization, else ``SGD(learning_rate)``."""
        if self.optimizer is None:
            return keras.optimizers.SGD(self.learning_rate)
        return keras.optimizers.get(copy.deepcopy(self.optimizer))

    def to_json(self) -> dict:
        """The spec as plain data, in the file format (what is hashed and logged).

        Keys added after a spec format was in use appear only when set, so the
        hash of an older spec (and so ``--resume``) does not change.
        """
        out = {
            "name": self.name,
            "dataset": self.dataset if isinstance(self.dataset, str) else self.dataset.to_json(),
            "model": self.model.to_json(),
            "schemes": [s.to_json() for s in self.schemes],
            "seeds": list(self.seeds),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "l2_lambda": self.l2_lambda,
            "device": self.device,
        }
        for key in ("optimizer", "loss", "data_dir"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.lsuv_examples != LSUV_EXAMPLES:
            out["lsuv_examples"] = self.lsuv_examples
        if self.watch != 1:
            out["watch"] = False if self.watch == 0 else {"every": self.watch}
        if self.optimizer is not None:
            del out["learning_rate"]
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


_TOP_KEYS = {field.name for field in dataclasses.fields(ComparisonSpec)} - {"base_dir"}
_MODEL_KINDS: dict[str, type[MLPModel] | type[ConvNetModel]] = {"mlp": MLPModel, "convnet": ConvNetModel}


@contextlib.contextmanager
def _key_paths() -> Iterator[None]:
    """Turns the errors of `keras_initlab.checks` (raised with key paths as names) into spec errors."""
    try:
        yield
    except (TypeError, ValueError) as error:
        if isinstance(error, SpecError) or not hasattr(error, "argument"):
            raise
        kind = SpecTypeError if isinstance(error, TypeError) else SpecError
        fields = vars(error)  # what `keras_initlab.checks.fail` set: argument, requirement, received
        raise kind(f"{fields['argument']}: must be {fields['requirement']}; got {shown(fields['received'])}") from None


def _mapping(value, path: str, what: str) -> Mapping:
    if not isinstance(value, Mapping):
        fail(TypeError, path, what, value)
    if not all(isinstance(key, str) for key in value):
        fail(TypeError, path, f"{what} with str keys", value)
    return value


def _known_keys(mapping: Mapping, allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise SpecError(f"{prefix}{shown_text(unknown[0])}: unknown key; allowed: {', '.join(sorted(allowed))}")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _name(value, path: str) -> str:
    """A spec or scheme name: it becomes part of MLflow metric names and of file names."""
    requirement = f"a name of at most {MAX_NAME_LENGTH} letters, digits, '_', '.', '-' starting with a letter or digit"
    check_str(value, path, requirement)
    if not _NAME.fullmatch(value) or len(value) > MAX_NAME_LENGTH:
        fail(ValueError, path, requirement, value)
    return value


def _dataset(value, data_dir, base_dir: Path | None) -> str | NpzFile:
    """``dataset``: a name (`keras_initlab.data.load_dataset` judges it when the data loads) of at most
    `MAX_NAME_LENGTH` characters, or ``{npz: PATH}`` of a file that exists; ``data_dir`` goes with a name
    that reads files (``mnist``, a TFDS name)."""
    forms = "a dataset name (mnist-10k, mnist, keras:NAME, a TensorFlow Datasets name) or {npz: PATH}"
    if isinstance(value, Mapping):
        _known_keys(value, {"npz"}, "dataset")
        path = NpzFile(check_str(value.get("npz"), "dataset.npz", "the path of an .npz file")).path(base_dir)
        try:
            found = path.is_file()
        except OSError as e:  # a name too long, no permission
            raise SpecError(f"dataset.npz: cannot read {shown_text(path)} ({e.strerror})") from None
        if not found:
            raise SpecError(
                f"dataset.npz: no such file {shown_text(value['npz'])} in "
                f"{shown_text((base_dir or Path.cwd()).resolve())} (the path is relative to the spec's folder)"
            )
        dataset: str | NpzFile = NpzFile(value["npz"])
    else:
        dataset = name = check_str(value, "dataset", forms)
        if not name or len(name) > MAX_NAME_LENGTH:
            fail(ValueError, "dataset", f"{forms}, of at most {MAX_NAME_LENGTH} characters", value)
    if data_dir is not None and (
        not isinstance(dataset, str) or dataset == "mnist-10k" or dataset.startswith("keras:")
    ):
        shown_dataset = dataset if isinstance(dataset, str) else "{npz: ...}"
        raise SpecError(f"data_dir: only for dataset: mnist or a TensorFlow Datasets name, not {shown_dataset}")
    return dataset


def check_seed(value, path: str) -> int:
    """``value`` if it is a model seed as the spec's ``seeds`` hold them (an int between 0 and `MAX_SEED`), else a
    `SpecTypeError` or `SpecError` naming ``path``."""
    with _key_paths():
        return check_int(value, path, minimum=0, maximum=MAX_SEED)


def _watch(value) -> int:
    """``true`` -> 1, ``false`` -> 0, ``{every: N}`` -> N (an int from 1 to `MAX_EPOCHS`)."""
    if isinstance(value, bool):
        return int(value)
    _mapping(value, "watch", "true, false or a mapping {every: N}")
    if set(value) != {"every"}:
        raise SpecError(f"watch: must have exactly the key every (watch: {{every: 5}}); got {shown(sorted(value))}")
    return check_int(value["every"], "watch.every", minimum=1, maximum=MAX_EPOCHS)


def _subset(value) -> tuple[int, int] | None:
    if value is None:
        return None
    _mapping(value, "subset", "a mapping {train: N, val: M}")
    if set(value) != {"train", "val"}:
        raise SpecError(f"subset: must have exactly the keys train and val; got {shown(sorted(value))}")
    return check_int(value["train"], "subset.train", minimum=1), check_int(value["val"], "subset.val", minimum=1)


def _scheme(value, path: str) -> SchemeSpec:
    known = list_schemes()
    if isinstance(value, str):
        if value not in known:
            raise SpecError(f"{path}: unknown scheme {shown(value)}; known: {', '.join(known)}")
        return SchemeSpec(value)
    _mapping(value, path, "a scheme name or a mapping {name, kernel, bias}")
    if set(value) != {"name", "kernel", "bias"}:
        raise SpecError(
            f"{path}: an explicit scheme needs exactly the keys name, kernel, bias; got {shown(sorted(value))}"
        )
    name = _name(value["name"], f"{path}.name")
    if name in known:
        raise SpecError(f"{path}.name: {shown(name)} is a built-in scheme; give an explicit scheme its own name")
    for part in ("kernel", "bias"):
        check_initializer(value[part], f"{path}.{part}")
    return SchemeSpec(name, plain(value["kernel"]), plain(value["bias"]))


def _model(value, base_dir: Path | None) -> ModelSpec:
    """``model``: the MLP (``kind: mlp``, the default), the conv net (``kind: convnet``) or a factory."""
    _mapping(value, "model", "a mapping {sizes, activation, output}, {kind: convnet, ...} or {factory: ...}")
    if "factory" in value:
        _known_keys(value, {"factory"}, "model.")
        return FactoryModel(check_factory(value["factory"], base_dir))
    kind = check_choice(value.get("kind", "mlp"), "model.kind", tuple(_MODEL_KINDS))
    model_class = _MODEL_KINDS[kind]
    default = model_class()
    _known_keys(value, {"kind", *(f.name for f in dataclasses.fields(model_class))}, "model.")
    activation = check_str(value.get("activation", default.activation), "model.activation", "an activation name")
    try:
        keras.activations.get(activation)
    except ValueError:
        raise SpecError(f"model.activation: unknown activation {shown(activation)}") from None
    output = check_choice(value.get("output", default.output), "model.output", OUTPUTS)
    if model_class is MLPModel:
        sizes = check_ints(
            value.get("sizes", list(MLPModel.sizes)),
            "model.sizes",
            minimum=1,
            maximum=MAX_UNITS,
            min_len=2,
            max_len=MAX_LAYERS + 1,
        )
        return MLPModel(tuple(sizes), activation, output)
    filters = check_ints(
        value.get("filters", list(ConvNetModel.filters)),
        "model.filters",
        minimum=1,
        maximum=MAX_UNITS,
        min_len=2,
        max_len=2,
    )
    return ConvNetModel(tuple(filters), activation, output)
