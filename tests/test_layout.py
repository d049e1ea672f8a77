"""The repository's shape, read from the source: two layers (the library, the application), data flowing one
way in a declared order, no import circle anywhere, heavy libraries loaded where used, and the commands that
train nothing free of Keras and TensorFlow.

Every import is read with `ast` (module level and inside functions alike), so these tests hold for code paths
that no other test runs.
"""

import ast
import functools
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LIBRARY = [
    "keras_initlab._version",
    "keras_initlab.checks",
    "keras_initlab.backend",
    "keras_initlab.initializers",
    "keras_initlab.schemes",
    "keras_initlab.theory",
    "keras_initlab.data.dataset",
    "keras_initlab.data.tfds",
    "keras_initlab.data.mnist",
    "keras_initlab.data.keras_cache",
    "keras_initlab.data",
    "keras_initlab.models",
    "keras_initlab.diagnostics",
    "keras_initlab.watch",
    "keras_initlab.lsuv",
    "keras_initlab.training.driver",
    "keras_initlab.training.planning",
    "keras_initlab.training.stackable",
    "keras_initlab.training.single",
    "keras_initlab.training.stacked",
    "keras_initlab.training",
    "keras_initlab",
]
"""The Keras library, lowest first: a module may import only modules before it in this list."""

APPLICATION = [
    "initlab.messages",
    "initlab.background",
    "initlab.spec_files",
    "initlab.catalog",
    "initlab.server",
    "initlab.cluster",
    "initlab.report",
    "initlab.tracking.layout",
    "initlab.tracking.store",
    "initlab.tracking.ui",
    "initlab.tracking.records",
    "initlab.tracking.tracker",
    "initlab.tracking.process",
    "initlab.tracking.queue",
    "initlab.tracking",
    "initlab.spec_keras",
    "initlab.spec_models",
    "initlab.spec",
    "initlab.plots",
    "initlab.comparison.builder",
    "initlab.comparison.preflight",
    "initlab.comparison.diagnose",
    "initlab.comparison.progress",
    "initlab.comparison.children",
    "initlab.comparison.group",
    "initlab.comparison.summary",
    "initlab.comparison.local",
    "initlab.comparison.on_ray",
    "initlab.comparison.runner",
    "initlab.comparison.own_loop",
    "initlab.comparison",
    "initlab",
    "initlab.cli",
    "initlab.console",
    "initlab.__main__",
]
"""The application, lowest first, above the whole library: it may import the library and modules before it here."""

ORDER = LIBRARY + APPLICATION

LIGHT = ["initlab.console", "initlab.tracking.process"]
"""The console script before it trains (``initlab list``, ``initlab spec``, ``initlab serve``, argument parsing)
and the MLflow tracking process: what they import at module level, transitively, loads no heavy library."""

HEAVY = {"keras", "tensorflow", "keras_initlab", "mlflow", "ray", "matplotlib", "jax"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def python_files() -> list[Path]:
    """Every Python file of the repository but the example factories (a user's files, loaded by path)."""
    files = [p for folder in ("keras_initlab", "initlab", "tests", "scripts") for p in (REPO / folder).rglob("*.py")]
    return sorted(p for p in files if "examples" not in p.relative_to(REPO).parts)


@functools.cache
def modules() -> dict[str, ast.Module]:
    return {
        module_name(p): ast.parse(p.read_text())
        for p in python_files()
        if p.relative_to(REPO).parts[0] in ("keras_initlab", "initlab")
    }


def imported(tree: ast.Module, top_level_only: bool = False) -> set[str]:
    """Full names of what ``tree`` imports (``pkg.x`` for ``from pkg import x`` when ``pkg.x`` is a module)."""
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in ORDER else node.module)
    return names


def internal(names: set[str]) -> set[str]:
    """The packages' own modules among ``names`` (a name inside a module counts as that module)."""
    out = set()
    for name in names:
        while name and name not in ORDER:
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def test_every_module_is_placed_in_the_order():
    assert sorted(modules()) == sorted(ORDER)


def test_data_flows_one_way_and_the_library_never_imports_the_application():
    rank = {name: i for i, name in enumerate(ORDER)}
    for name, tree in modules().items():
        for target in internal(imported(tree)) - {name}:
            assert rank[target] < rank[name], f"{name} imports {target}, a layer above it"
    for name in LIBRARY:
        assert not {n for n in imported(modules()[name]) if n.split(".")[0] == "initlab"}, name


def test_no_import_circle_anywhere_in_the_repository():
    # Packages, scripts, tests (which import each other's helpers): every import between the repository's files.
    trees = {module_name(p): ast.parse(p.read_text()) for p in python_files()}  # packages, scripts and tests
    local = {name.rpartition(".")[2]: name for name in trees if name.split(".")[0] in ("tests", "scripts")}
    graph = {}
    for name, tree in trees.items():
        targets = internal(imported(tree)) | {local[n] for n in imported(tree) if n in local}
        graph[name] = targets - {name}
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in graph.get(name, ()):
            assert state.get(target) != "open", " -> ".join(path + [name, target])
            if target not in state:
                visit(target, path + [name])
        state[name] = "done"

    for name in graph:
        if name not in state:
            visit(name, [])


def test_what_trains_nothing_imports_no_heavy_library():
    trees = modules()
    seen, todo = set(), list(LIGHT)
    while todo:
        name = todo.pop()
        seen.add(name)
        names = imported(trees[name], top_level_only=True)
        assert not {n.split(".")[0] for n in names} & HEAVY, (name, sorted(names))
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}  # run first by Python
        todo += [m for m in internal(names) | parents if m not in seen and m in trees]
    assert {
        "initlab.cli",
        "initlab.server",
        "initlab.spec_files",
        "initlab.catalog",
        "initlab.tracking.tracker",
        "initlab.tracking.queue",
    } <= seen


def test_tensorflow_is_imported_only_behind_the_boundary():
    # The trainers and the diagnostics' gradient norms; each entry point calls backend.require_tensorflow.
    users = {name for name, tree in modules().items() if any(n.split(".")[0] == "tensorflow" for n in imported(tree))}
    assert users == {
        "keras_initlab.diagnostics",
        "keras_initlab.watch",
        "keras_initlab.training.driver",
        "keras_initlab.training.planning",
        "keras_initlab.training.single",
        "keras_initlab.training.stacked",
    }
    for name in (
        "keras_initlab.diagnostics",
        "keras_initlab.watch",
        "keras_initlab.training.single",
        "keras_initlab.training.stacked",
    ):
        assert "keras_initlab.backend" in imported(modules()[name]), name


def test_the_spec_imports_no_trainer_and_no_tensorflow():
    spec = modules()["initlab.spec"]
    assert not {n for n in imported(spec) if n.split(".")[0] == "tensorflow"}
    assert not internal(imported(spec)) & {
        "keras_initlab.training",
        "keras_initlab.training.driver",
        "keras_initlab.training.single",
        "keras_initlab.training.stacked",
        "keras_initlab.diagnostics",
        "initlab.tracking",
        "initlab.plots",
    }


def test_plotting_tracking_and_cluster_libraries_are_imported_lazily():
    # Checked in the source: Keras 3.15 itself imports matplotlib (keras.src.visualization),
    # so sys.modules cannot tell whether these modules would.
    for name, tree in modules().items():
        top_level = {n.split(".")[0] for n in imported(tree, top_level_only=True)}
        assert not top_level & {"matplotlib", "mlflow", "ray"}, (name, top_level)

    def users(library):
        return {name for name, tree in modules().items() if any(n.split(".")[0] == library for n in imported(tree))}

    assert users("matplotlib") == {"initlab.plots"}  # every figure is drawn one way, in one module
    assert users("mlflow") == {"initlab.tracking.store", "initlab.tracking.tracker", "initlab.tracking.process"}
    assert users("ray") == {"initlab.cluster", "initlab.comparison.on_ray"}  # connecting; a comparison's units as tasks


def test_no_module_is_longer_than_one_job_needs():
    lengths = {
        module_name(p): len(p.read_text().splitlines())
        for p in python_files()
        if p.relative_to(REPO).parts[0] in ("keras_initlab", "initlab")
    }
    assert max(lengths.values()) <= 600 and sorted(lengths.values())[-2] < 500, sorted(
        lengths.items(), key=lambda kv: -kv[1]
    )[:3]
    assert all(n <= 300 for name, n in lengths.items() if name.startswith("initlab.comparison")), lengths


def test_the_readme_map_is_the_tree():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    mapped = set(re.findall(r"^\| `([^`]+)`", section, flags=re.MULTILINE))
    tree = {
        str(p.relative_to(REPO)) for p in python_files() if p.relative_to(REPO).parts[0] in ("keras_initlab", "initlab")
    }
    tree |= {
        "initlab/examples/",
        "keras_initlab/data_files/",
        "tests/",
        "scripts/",
        "tracking/",
        "setup.cfg",
        "README.md",
        "BENCHMARKS.md",
        "CHANGELOG.md",
        "pyproject.toml",
        ".pre-commit-config.yaml",
        "docs/",
    }
    assert mapped == tree, (sorted(mapped - tree), sorted(tree - mapped))


def test_the_public_names_of_both_packages():
    import initlab
    import keras_initlab

    for name in keras_initlab.__all__:
        assert getattr(keras_initlab, name) is not None, name
    for name in initlab.__all__:
        assert getattr(initlab, name) is not None, name
    for name in keras_initlab.MOVED_TO_APPLICATION:  # moved in 0.5.0: the error says where to
        with pytest.raises(AttributeError, match=rf"keras_initlab.{name} moved .* `from initlab import {name}`"):
            getattr(keras_initlab, name)
        assert name in initlab.__all__
