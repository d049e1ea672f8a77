"""initlab: the application of keras-initlab: comparison specs, their runs tracked in MLflow, on this machine or
on Ray, the ``initlab`` command and ``initlab serve``. It imports the library (`keras_initlab`), never the reverse.

Importing ``initlab`` is light (no Keras, no TensorFlow, no MLflow): the commands that train nothing, and the
MLflow tracking process, load only what they use. The names below that train load the library when first used.

>>> import initlab
>>> outcome = initlab.run_comparison("nielsen")          # doctest: +SKIP
>>> spec = initlab.ComparisonSpec.from_file(initlab.spec_path("deep-relu"))   # doctest: +SKIP
>>> with initlab.Comparison("my-study") as comparison: ...  # your own training loop   # doctest: +SKIP
"""

from initlab.spec_files import SpecError, SpecTypeError, builtin_specs, spec_path


def __getattr__(name: str):
    # The names that load the library (TensorFlow): imported when first used.
    if name in ("run_comparison", "diagnose_spec", "ComparisonOutcome", "Comparison"):
        from initlab import comparison

        return getattr(comparison, name)
    if name == "ComparisonSpec":
        from initlab.spec import ComparisonSpec

        return ComparisonSpec
    raise AttributeError(f"module 'initlab' has no attribute {name!r}")


__all__ = [
    "Comparison",
    "ComparisonOutcome",
    "ComparisonSpec",
    "SpecError",
    "SpecTypeError",
    "builtin_specs",
    "diagnose_spec",
    "run_comparison",
    "spec_path",
]
