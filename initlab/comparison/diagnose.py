"""``initlab diagnose``: every scheme of a spec at initialization, as tables and figures (`diagnose_spec`).

>>> tables = diagnose_spec(ComparisonSpec.from_file(spec_path("deep-tanh")), "out")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from initlab.comparison.preflight import check_spec_fits, load_spec_data, resolve_spec_device
from initlab.messages import shown_text
from initlab.plots import plot_preactivation_std_by_depth
from initlab.spec import ComparisonSpec, SpecError, check_seed
from keras_initlab.backend import require_tensorflow


def diagnose_spec(spec: ComparisonSpec, out_dir: str | os.PathLike, seed: int | None = None) -> dict:
    """Every scheme of ``spec`` at initialization: ``{scheme: DiagnosticsTable}``, and figures in ``out_dir``.

    Builds each scheme's model with ``seed`` (default: the spec's first seed; else an int between 0 and
    `initlab.spec.MAX_SEED`, like the spec's seeds, or a `SpecError` before anything is loaded),
    runs `keras_initlab.diagnostics.diagnose` on `initlab.comparison.builder.diagnostic_batch`, and writes
    ``activations-<scheme>.png`` (per-layer activation histograms) per scheme
    and ``preact-std-by-depth.png`` (measured std, predicted dashed, every
    scheme on one axis). An initializer whose variance the theory does not know
    is a `SpecError` naming the scheme.
    """
    require_tensorflow("initlab diagnose")
    seed = spec.seeds[0] if seed is None else check_seed(seed, "seed (--seed)")
    data = load_spec_data(spec)
    builder = check_spec_fits(spec, data, resolve_spec_device(spec))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {}
    for i, scheme in enumerate(spec.schemes):
        model, steps = builder.initial(scheme, seed)
        title = f"{scheme.name} (seed {seed}): activations at initialization"
        try:
            tables[scheme.name], figure = builder.diagnose(model, steps, title)
        except TypeError as e:
            raise SpecError(f"schemes[{i}] ({shown_text(scheme.name)}): cannot predict its variance: {e}") from None
        figure.savefig(out / f"activations-{scheme.name}.png")
    title = f"{spec.name} at initialization (dashed: predicted)"
    figure = plot_preactivation_std_by_depth(tables, title=title, show_predicted=True)
    figure.savefig(out / "preact-std-by-depth.png")
    return tables
