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

import dataclasses
import hashlib
import json
import math
import os
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
        name = _expect(raw["name"], str, "name", "a non-empty string")
        if not name.strip():
            raise SpecError("name: must be a non-empty string")
        model = raw.get("model", {})
        _expect(model, Mapping, "model", "a mapping")
        unknown = sorted(set(model) - _MODEL_KEYS)
        if unknown:
            raise SpecError(f"model.{unknown[0]}: unknown key; allowed: {', '.join(sorted(_MODEL_KEYS))}")
        defaults = cls.__dataclass_fields__
        sizes = tuple(_int_list(model.get("sizes", defaults["sizes"].default), "model.sizes", minimum=1, min_len=2))
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
    name = _expect(value["name"], str, f"{path}.name", "a string")
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
