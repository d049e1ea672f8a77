"""Running a comparison spec: data -> models -> trainers -> MLflow tracking -> report.

One module per job:

- `initlab.comparison.preflight`: what is checked before any run exists (`check_spec_fits`, `load_spec_data`).
- `initlab.comparison.builder`: a run's untrained model, its loss and its step-0 diagnostics (`ModelBuilder`).
- `initlab.comparison.children`: the child runs' params, their prepared models, `EpochMetricsLogger`.
- `initlab.comparison.group`: one group of runs trained and handed to tracking (`train_group`).
- `initlab.comparison.local`: the runs trained on this machine (`LocalRunner`).
- `initlab.comparison.on_ray`: the runs trained as Ray tasks (`RayRunner`).
- `initlab.comparison.progress`: the progress line, Ctrl-C and SIGTERM (`Progress`, `Interrupts`).
- `initlab.comparison.runner`: `run_comparison`, which resolves its inputs once and picks a runner.
- `initlab.comparison.own_loop`: your own training loop as a comparison (`Comparison`, `Comparison.run`).
- `initlab.comparison.diagnose`: ``initlab diagnose`` (`diagnose_spec`).

All of it needs the TensorFlow backend (`keras_initlab.backend`).

>>> outcome = run_comparison("nielsen")  # a built-in spec (initlab list), or a spec file's path  # doctest: +SKIP
"""

from initlab.comparison.builder import ModelBuilder, diagnostic_batch
from initlab.comparison.children import EpochMetricsLogger, model_params, optimizer_params, shared_params
from initlab.comparison.diagnose import diagnose_spec
from initlab.comparison.own_loop import Comparison, ComparisonRun
from initlab.comparison.preflight import check_spec_fits, load_spec_data, resolve_spec_device
from initlab.comparison.runner import ComparisonOutcome, run_comparison

__all__ = [
    "Comparison",
    "ComparisonOutcome",
    "ComparisonRun",
    "EpochMetricsLogger",
    "ModelBuilder",
    "check_spec_fits",
    "diagnose_spec",
    "diagnostic_batch",
    "load_spec_data",
    "model_params",
    "optimizer_params",
    "resolve_spec_device",
    "run_comparison",
    "shared_params",
]
