"""What the library offers by name, for ``initlab list``: its built-in schemes and registered initializers.

Read from the library's source (`keras_initlab.schemes`, `keras_initlab.initializers`) with `ast`,
not imported: ``import keras_initlab`` loads TensorFlow (seconds), and listing names must not. So the
descriptions have one place, the library, and ``tests/test_catalog.py`` checks that what is read here
is what the imported library says (`keras_initlab.list_schemes`, the classes' docstrings).

>>> schemes()["he"]
'w ~ N(0, 2/n_in), b = 0.01: the ReLU rule'
>>> list(initializers())[0]
'ScaledGaussian'
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path


@functools.cache
def _library_source(module: str) -> ast.Module:
    """The parsed source of ``keras_initlab/<module>.py``, found without importing the package."""
    spec = importlib.util.find_spec("keras_initlab")  # a top-level package: located, not imported
    folder = Path(spec.submodule_search_locations[0])
    return ast.parse((folder / f"{module}.py").read_text())


def schemes() -> dict[str, str]:
    """``{name: one-line description}`` of the built-in schemes (`keras_initlab.list_schemes`)."""
    for node in _library_source("schemes").body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "_SCHEMES":
            return {
                key.value: value.elts[0].value for key, value in zip(node.value.keys, node.value.values, strict=True)
            }
    raise LookupError("keras_initlab/schemes.py defines no _SCHEMES table")


def initializers() -> dict[str, str]:
    """``{class name: first line of its docstring}`` of the initializers the library registers with Keras
    (``keras_initlab>NAME`` in a spec), in the order they are defined."""
    return {
        node.name: ast.get_docstring(node).strip().splitlines()[0]
        for node in _library_source("initializers").body
        if isinstance(node, ast.ClassDef)
        and any("register_keras_serializable" in ast.unparse(d) for d in node.decorator_list)
    }
