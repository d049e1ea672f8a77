"""The package's shape, read from the source: data flows one way, heavy libraries load when used.

Every import is read with `ast` (module level and inside functions alike), so these
tests hold for code paths that no other test runs.
"""

import ast
from pathlib import Path

import keras_initlab

PACKAGE = Path(keras_initlab.__file__).parent

ORDER = [
    "_version",
    "server",
    "checks",
    "backend",
    "initializers",
    "schemes",
    "theory",
    "data",
    "models",
    "diagnostics",
    "lsuv",
    "report",
    "plots",
    "training.driver",
    "training.planning",
    "training.single",
    "training.stacked",
    "training",
    "spec",
    "tracking",
    "cluster",
    "comparison",
    "cli",
    "__main__",
    "",  # the package root, keras_initlab/__init__.py
]
"""Every module, lowest layer first: a module may import only modules above it in this list."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, ast.Module]:
    # examples/: the built-in specs' model factory, a user's file loaded by path (never imported by the package).
    return {module_name(p): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))
            if p.relative_to(PACKAGE).parts[0] != "examples"}


def imported(tree: ast.Module, top_level_only: bool = False) -> set[str]:
    """Full names of what ``tree`` imports (``keras_initlab.x`` for ``from keras_initlab import x``)."""
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "keras_initlab":
            # `from keras_initlab import x`: the submodule x, or a symbol of the package root.
            names.update(f"keras_initlab.{a.name}" if a.name in ORDER else "keras_initlab" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def internal(names: set[str]) -> set[str]:
    """The package's own modules among ``names``, as names in `ORDER` (symbols of the root count as the root)."""
    known = set(ORDER)
    out = set()
    for name in names:
        if name == "keras_initlab" or name.startswith("keras_initlab."):
            relative = name[len("keras_initlab."):] if "." in name else ""
            while relative not in known:
                relative = relative.rpartition(".")[0]
            out.add(relative)
    return out


def test_every_module_is_placed_in_the_order():
    assert sorted(modules()) == sorted(ORDER)


def test_data_flows_one_way():
    rank = {name: i for i, name in enumerate(ORDER)}
    for name, tree in modules().items():
        for target in internal(imported(tree)) - {name}:
            assert rank[target] < rank[name], f"{name or 'keras_initlab'} imports {target or 'keras_initlab'}, a layer above it"


def test_the_spec_imports_no_trainer_and_no_tensorflow():
    spec = modules()["spec"]
    assert not {n for n in imported(spec) if n.split(".")[0] == "tensorflow"}
    assert not internal(imported(spec)) & {"training", "training.driver", "training.single", "training.stacked",
                                            "comparison", "tracking", "diagnostics", "plots"}


def test_tensorflow_is_imported_only_behind_the_boundary():
    # The trainers and the diagnostics' gradient norms; each entry point calls backend.require_tensorflow.
    users = {name for name, tree in modules().items() if any(n.split(".")[0] == "tensorflow" for n in imported(tree))}
    assert users == {"diagnostics", "training.driver", "training.planning", "training.single", "training.stacked"}
    for name in ("diagnostics", "training.single", "training.stacked"):
        assert "keras_initlab.backend" in imported(modules()[name]), name


def test_plotting_tracking_and_cluster_libraries_are_imported_lazily():
    # Checked in the source: Keras 3.15 itself imports matplotlib (keras.src.visualization),
    # so sys.modules cannot tell whether these modules would.
    for name, tree in modules().items():
        top_level = {n.split(".")[0] for n in imported(tree, top_level_only=True)}
        assert not top_level & {"matplotlib", "mlflow", "ray"}, (name, top_level)
    users = {name for name, tree in modules().items() if any(n.split(".")[0] == "matplotlib" for n in imported(tree))}
    assert users == {"plots"}  # every figure is drawn one way, in one module
    users = {name for name, tree in modules().items() if any(n.split(".")[0] == "mlflow" for n in imported(tree))}
    assert users == {"tracking"}
    users = {name for name, tree in modules().items() if any(n.split(".")[0] == "ray" for n in imported(tree))}
    assert users == {"cluster", "comparison"}  # connecting; a comparison's units as tasks
