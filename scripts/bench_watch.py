"""What watching the layers costs: the same comparisons with ``watch: true`` and ``watch: false``, in one run.

Run: python scripts/bench_watch.py [--configs nielsen deep-relu] [--epochs N] [--repeats 5]

Each spec (``--epochs`` overrides its epochs, to make a quick run) is compared end to end with `run_comparison` into
one SQLite store in a temporary folder, watched and not, alternating, after a warm-up of each (one epoch, every run:
the compiled loops, for every shape of group, and the store exist, as in a user's second comparison), two ways:

- ``command``: as ``initlab compare`` runs it: MLflow's requests answered by a tracking process
  (`initlab.tracking.process`), started before the clock starts and given the time to import MLflow (the command
  imports TensorFlow meanwhile; that import, ~6 s, is left out here);
- ``api``: as ``run_comparison`` in a notebook: MLflow's requests made on a thread of this process.

Prints, per spec and way, the best wall time of each, the ratio watched / unwatched of the best times (the issue's
bound: at most 1.10), the median of the repeats' paired ratios, and the ratio of the median CPU seconds (this
process's threads and the tracking process's: the work watching adds, which the machine's load moves less than the
wall time).
"""

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from initlab import run_comparison
from initlab.spec import ComparisonSpec
from initlab.spec_files import spec_path
from initlab.tracking.process import start_tracking_process


def _idle(pid: int, quiet: float = 0.5, limit: float = 60.0) -> None:
    """Waits until process ``pid`` has slept (Linux: state S in /proc) for ``quiet`` seconds: the tracking process
    then waits for requests, MLflow imported."""
    stat, since, start = Path(f"/proc/{pid}/stat"), None, time.perf_counter()
    while time.perf_counter() - start < limit:
        sleeping = stat.read_text().rsplit(")", 1)[1].split()[0] == "S"
        since = (since or time.perf_counter()) if sleeping else None
        if since is not None and time.perf_counter() - since >= quiet:
            return
        time.sleep(0.05)


def _cpu() -> float:
    """CPU seconds used so far by this process (every thread) and its ended children (the tracking processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(spec: ComparisonSpec, uri: str, experiment: str, way: str) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of ``run_comparison`` run ``way`` (``command`` or ``api``); the CPU seconds
    include the tracking process's, but for its start (MLflow's import)."""
    tracking = start_tracking_process(uri) if way == "command" else None
    try:
        if tracking is not None:
            _idle(tracking.process.pid)
            started = Path(f"/proc/{tracking.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu_before = _cpu() + (int(started[11]) + int(started[12])) / os.sysconf("SC_CLK_TCK")
        else:
            cpu_before = _cpu()
        start = time.perf_counter()
        run_comparison(spec, tracking_uri=uri, experiment=experiment)
        wall = time.perf_counter() - start
    finally:
        if tracking is not None:
            tracking.end()
    return wall, _cpu() - cpu_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["nielsen", "deep-relu"], help="built-in specs or spec files")
    parser.add_argument("--epochs", type=int, default=None, help="instead of each spec's epochs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ways", nargs="+", choices=["command", "api"], default=["command", "api"])
    args = parser.parse_args()
    store = tempfile.TemporaryDirectory()
    uri = f"sqlite:///{store.name}/bench.db"
    print(
        f"{'spec':<12} {'way':<8} {'runs x epochs':>13} {'watch off':>10} {'watch on':>10} {'ratio':>7} "
        f"{'median ratio':>13} {'CPU ratio':>10}"
    )
    for config in args.configs:
        spec = ComparisonSpec.from_file(spec_path(config))
        if args.epochs is not None:
            spec = spec.replace(epochs=args.epochs)
        specs = {watched: spec.replace(watch=watched) for watched in (False, True)}
        for watched, each in specs.items():  # warm-up
            run_comparison(each.replace(epochs=1), tracking_uri=uri, experiment=f"warm-{watched}")
        times = {(way, watched): [] for way in args.ways for watched in (False, True)}
        for repeat in range(args.repeats):
            for way in args.ways:
                for watched, each in sorted(specs.items(), reverse=bool(repeat % 2)):  # off first, then on first, ...
                    times[way, watched].append(timed(each, uri, f"{config}-{watched}", way))
        for way in args.ways:
            off, on = times[way, False], times[way, True]
            best_off, best_on = min(wall for wall, _ in off), min(wall for wall, _ in on)
            paired = statistics.median(t / u for (t, _), (u, _) in zip(on, off, strict=True))
            cpu = statistics.median(c for _, c in on) / statistics.median(c for _, c in off)
            print(
                f"{config:<12} {way:<8} {len(spec.runs()):>6} x {spec.epochs:<4} {best_off:9.2f}s {best_on:9.2f}s "
                f"{best_on / best_off:7.3f} {paired:13.3f} {cpu:10.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
