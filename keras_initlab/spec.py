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
Absent keys take the defaults of `ComparisonSpec`'s fields.

A spec is small and bounded: at most `MAX_SPEC_BYTES`, no YAML aliases (a "billion laughs"
file would expand to gigabytes), names of at most `MAX_NAME_LENGTH` characters (they become
MLflow metric and file names), and at most `MAX_SEEDS` seeds, `MAX_SCHEMES` schemes,
`MAX_EPOCHS` epochs, `MAX_LAYERS` layers of at most `MAX_UNITS` units, `MAX_RUNS` runs.

Everything is checked before anything runs, with the argument checks of
`keras_initlab.checks`; errors name the key path, e.g.
``schemes[2]: unknown scheme 'sparce10'; known: ...``. A value of the wrong type is a
`SpecTypeError` (a `SpecError` and a `TypeError`), any other bad value a `SpecError`
(a `ValueError`). This module imports no trainer and no TensorFlow.

>>> spec = ComparisonSpec.from_dict({"name": "demo", "schemes": ["he"], "seeds": [0]})
>>> [(r.scheme.name, r.seed) for r in spec.runs()]
[('he', 0)]
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import keras

from keras_initlab.backend import DEVICES
from keras_initlab.checks import (
    MAX_SHOWN, check_choice, check_int, check_ints, check_list, check_number, check_str, fail, shown,
)
from keras_initlab.models import OUTPUTS, SchemeLike
from keras_initlab.schemes import list_schemes


MAX_SPEC_BYTES = 1 << 20
"""Largest spec file read (1 MiB); a real spec is a few hundred bytes."""
MAX_NAME_LENGTH = 100
"""Longest spec or scheme name: names go into MLflow metric keys (at most 250 characters) and file names."""
MAX_SEEDS = 1000
MAX_SCHEMES = 100
MAX_RUNS = 10_000
"""Most (scheme, seed) runs in one comparison: MLflow returns at most 10,000 runs per search."""
MAX_EPOCHS = 100_000
MAX_LAYERS = 1000
MAX_UNITS = 1_000_000
MAX_SEED = 2**32 - 1


class SpecError(ValueError):
    """A comparison spec is invalid; the message starts with the key path."""


class SpecTypeError(SpecError, TypeError):
    """A spec value has the wrong type; the message starts with the key path."""


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
    """A validated comparison: dataset, model, schemes x seeds and the training hyperparameters.

    The field defaults are the defaults of the spec file format.
    """

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
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"{path}: {size} bytes; a spec is at most {MAX_SPEC_BYTES} bytes")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise SpecError(f"{path}: not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x})") from None
        if path.suffix in (".yaml", ".yml"):
            import yaml  # ~20 ms: loaded when a YAML spec is read, not by `import keras_initlab`

            try:
                raw = yaml.load(text, Loader=_loader_without_aliases())
            except yaml.YAMLError as e:
                raise SpecError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
            except RecursionError:
                raise SpecError(f"{path}: nested too deeply to be a spec") from None
        elif path.suffix == ".json":
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as e:
                raise SpecError(f"{path}: not valid JSON: {e}") from None
            except RecursionError:
                raise SpecError(f"{path}: nested too deeply to be a spec") from None
        else:
            raise SpecError(f"{path}: a spec must be a .yaml, .yml or .json file")
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Mapping) -> ComparisonSpec:
        """Validates a parsed spec; raises `SpecError` (or `SpecTypeError`) naming the first bad key path."""
        with _key_paths():
            return cls._parse(raw)

    @classmethod
    def _parse(cls, raw) -> ComparisonSpec:
        default = {field.name: field.default for field in dataclasses.fields(cls)}
        _mapping(raw, "spec", "a mapping of spec keys")
        _known_keys(raw, _TOP_KEYS, "")
        for key in ("name", "schemes"):
            if key not in raw:
                raise SpecError(f"{key}: required")
        model = _mapping(raw.get("model", {}), "model", "a mapping {sizes, activation, output}")
        _known_keys(model, _MODEL_KEYS, "model.")
        activation = check_str(model.get("activation", default["activation"]), "model.activation", "an activation name")
        try:
            keras.activations.get(activation)
        except ValueError:
            raise SpecError(f"model.activation: unknown activation {shown(activation)}") from None
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
        return cls(
            name=_name(raw["name"], "name"),
            schemes=tuple(schemes),
            seeds=tuple(seeds),
            dataset=check_str(raw.get("dataset", default["dataset"]), "dataset", "a dataset name"),
            data_dir=None if data_dir is None else check_str(data_dir, "data_dir", "a directory path"),
            subset=_subset(raw.get("subset", default["subset"])),
            sizes=tuple(check_ints(model.get("sizes", list(default["sizes"])), "model.sizes", minimum=1,
                                   maximum=MAX_UNITS, min_len=2, max_len=MAX_LAYERS + 1)),
            activation=activation,
            output=check_choice(model.get("output", default["output"]), "model.output", OUTPUTS),
            epochs=check_int(raw.get("epochs", default["epochs"]), "epochs", minimum=1, maximum=MAX_EPOCHS),
            batch_size=check_int(raw.get("batch_size", default["batch_size"]), "batch_size", minimum=1),
            learning_rate=check_number(raw.get("learning_rate", default["learning_rate"]), "learning_rate", positive=True),
            l2_lambda=check_number(raw.get("l2_lambda", default["l2_lambda"]), "l2_lambda", minimum=0),
            device=check_choice(raw.get("device", default["device"]), "device", DEVICES),
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


@functools.cache
def _loader_without_aliases():
    """PyYAML's safe loader, refusing aliases (``*name``): they let a few bytes expand to gigabytes."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"aliases (*{event.anchor}) are not allowed in a spec; write the value out",
                    event.start_mark,
                )
            return super().compose_node(parent, index)

    return Loader


_MODEL_KEYS = {"sizes", "activation", "output"}
_TOP_KEYS = {field.name for field in dataclasses.fields(ComparisonSpec)} - _MODEL_KEYS | {"model"}


@contextlib.contextmanager
def _key_paths() -> Iterator[None]:
    """Turns the errors of `keras_initlab.checks` (raised with key paths as names) into spec errors."""
    try:
        yield
    except (TypeError, ValueError) as error:
        if isinstance(error, SpecError) or not hasattr(error, "argument"):
            raise
        kind = SpecTypeError if isinstance(error, TypeError) else SpecError
        raise kind(f"{error.argument}: must be {error.requirement}; got {shown(error.received)}") from None


def _mapping(value, path: str, what: str) -> Mapping:
    if not isinstance(value, Mapping):
        fail(TypeError, path, what, value)
    if not all(isinstance(key, str) for key in value):
        fail(TypeError, path, f"{what} with str keys", value)
    return value


def _known_keys(mapping: Mapping, allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise SpecError(f"{prefix}{unknown[0][:MAX_SHOWN]}: unknown key; allowed: {', '.join(sorted(allowed))}")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _name(value, path: str) -> str:
    """A spec or scheme name: it becomes part of MLflow metric names and of file names."""
    requirement = (
        f"a name of at most {MAX_NAME_LENGTH} letters, digits, '_', '.', '-' starting with a letter or digit"
    )
    check_str(value, path, requirement)
    if not _NAME.fullmatch(value) or len(value) > MAX_NAME_LENGTH:
        fail(ValueError, path, requirement, value)
    return value


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
        raise SpecError(f"{path}.name: {name!r} is a built-in scheme; give an explicit scheme its own name")
    for part in ("kernel", "bias"):
        config = value[part]
        if not isinstance(config, (str, Mapping)):
            fail(TypeError, f"{path}.{part}", "an initializer name or Keras config", config)
        try:
            init = keras.initializers.get(dict(config) if isinstance(config, Mapping) else config)
        except (ValueError, TypeError) as e:
            raise SpecError(f"{path}.{part}: not a Keras initializer: {e}") from None
        if init is None:
            raise SpecError(f"{path}.{part}: not a Keras initializer: {shown(config)}")
    return SchemeSpec(name, _plain(value["kernel"]), _plain(value["bias"]))


def _plain(config):
    return json.loads(json.dumps(config))
