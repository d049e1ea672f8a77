"""Tracking overhead: the same comparison with and without MLflow tracking, in one run.

Run: python scripts/bench_tracking.py [--config nielsen] [--repeats 3]

"Without" trains exactly the models `initlab compare` trains, grouped the same
way (stacked per seed), with no MLflow at all; "with" is `run_comparison` into a
SQLite store in a temporary directory (created by the warm-up, as a user's store
exists after the first comparison: creating a store, MLflow's schema migrations,
is a one-time cost and is timed separately): params, per-epoch metrics, the
step-0 diagnostics, the saved models, the parent's plot, tables and chart view;
"with --histograms" adds every run's activation-histogram figure. All are timed
end to end after a warm-up that compiles the training loops, alternating, best
of `repeats`; and, since the machine's speed drifts over minutes, the median of
each repeat's ratio to the untracked run just before it.
"""

import argparse
import statistics
import tempfile
import time

from initlab.comparison import ModelBuilder, load_spec_data, resolve_spec_device, run_comparison
from initlab.comparison.local import groups
from initlab.spec import ComparisonSpec
from initlab.spec_files import spec_path
from keras_initlab.training import train_stacked
from keras_initlab.training.planning import wave_size


def untracked(spec: ComparisonSpec) -> None:
    data = load_spec_data(spec)
    builder = ModelBuilder(spec, data)
    for group in groups(spec.runs(), stack=True, size=wave_size(resolve_spec_device(spec))):
        models = [builder.build(run.scheme, run.seed) for run in group]
        common = dict(
            epochs=spec.epochs,
            batch_size=spec.batch_size,
            learning_rate=spec.learning_rate,
            seed=group[0].seed,
            device=spec.device,
        )
        train_stacked(models, data, **common)  # one model alone goes to `train`, as in run_comparison


def tracked(spec: ComparisonSpec, uri: str, histograms: bool = False) -> None:
    run_comparison(spec, tracking_uri=uri, histograms=histograms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="nielsen", help="a built-in spec's name or a spec file")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    spec = ComparisonSpec.from_file(spec_path(args.config))
    warm = spec.replace(epochs=1, seeds=[spec.seeds[0]])
    store = tempfile.TemporaryDirectory()
    uri = f"sqlite:///{store.name}/bench.db"
    untracked(warm)
    start = time.perf_counter()
    tracked(warm, uri)
    print(f"warm-up comparison into a new store (schema creation included): {time.perf_counter() - start:.2f} s")
    jobs = {
        "without tracking": untracked,
        "with tracking": lambda s: tracked(s, uri),
        "with --histograms": lambda s: tracked(s, uri, histograms=True),
    }
    times = {name: [] for name in jobs}
    for _ in range(args.repeats):
        for name, job in jobs.items():
            start = time.perf_counter()
            job(spec)
            times[name].append(time.perf_counter() - start)
    base = min(times["without tracking"])
    runs = len(spec.runs())
    print(f"spec {args.config}: {runs} runs x {spec.epochs} epochs")
    for name, measured in times.items():
        best = min(measured)
        line = f"{name + ':':<19} {best:7.2f} s   (all: {', '.join(f'{t:.2f}' for t in measured)})"
        if best is not base:
            paired = statistics.median(t / u for t, u in zip(measured, times["without tracking"], strict=True))
            line += (
                f"   overhead {best - base:+.2f} s = {best / base - 1:+.1%} ({(best - base) / runs * 1e3:.0f} ms "
                f"per run); median of the repeats' ratios {paired - 1:+.1%}"
            )
        print(line)


if __name__ == "__main__":
    main()
