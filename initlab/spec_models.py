"""The model of a comparison spec (its ``model`` key): the built-in MLP (`MLPModel`), the built-in conv net
(`ConvNetModel`) or a user's factory (`FactoryModel`); `initlab.spec` parses the key into one of them.

>>> MLPModel(sizes=(784, 100, 100, 10), activation="relu").describe()
'MLP 784-100x2-10 relu'
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

from keras_initlab.models import build_convnet, build_mlp, factory_name


def _default(function: Callable, argument: str):
    """A default argument of ``function``: the spec's defaults are the builders' own."""
    return inspect.signature(function).parameters[argument].default


@dataclasses.dataclass(frozen=True)
class MLPModel:
    """The built-in MLP (`keras_initlab.models.build_mlp`): ``{sizes, activation, output}``."""

    sizes: tuple[int, ...] = tuple(_default(build_mlp, "sizes"))
    activation: str = _default(build_mlp, "activation")
    output: str = _default(build_mlp, "output")

    def to_json(self) -> dict:
        return {"sizes": list(self.sizes), "activation": self.activation, "output": self.output}

    def describe(self) -> str:
        """``MLP 784-100x29-10 relu``: runs of equal widths written once, with their count."""
        runs: list[list[int]] = []
        for size in self.sizes:
            if runs and runs[-1][0] == size:
                runs[-1][1] += 1
            else:
                runs.append([size, 1])
        widths = "-".join(f"{size}x{count}" if count > 1 else str(size) for size, count in runs)
        return f"MLP {widths} {self.activation}"


@dataclasses.dataclass(frozen=True)
class ConvNetModel:
    """The built-in conv net (`keras_initlab.models.build_convnet`): ``{kind: convnet, filters, activation,
    output}``."""

    filters: tuple[int, ...] = tuple(_default(build_convnet, "filters"))
    activation: str = _default(build_convnet, "activation")
    output: str = _default(build_convnet, "output")

    def to_json(self) -> dict:
        return {"kind": "convnet", "filters": list(self.filters), "activation": self.activation, "output": self.output}

    def describe(self) -> str:
        return f"conv net {'-'.join(map(str, self.filters))} {self.activation}"


@dataclasses.dataclass(frozen=True)
class FactoryModel:
    """A user's model: ``{factory: "file.py:function"}``, ``{factory: "package.module:function"}``,
    or (in Python) the function itself, recorded by its qualified name."""

    factory: str | Callable

    def to_json(self) -> dict:
        return {"factory": factory_name(self.factory)}

    def describe(self) -> str:
        return factory_name(self.factory)


ModelSpec = MLPModel | ConvNetModel | FactoryModel
