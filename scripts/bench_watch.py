"""What watching the layers costs: the same comparisons with ``watch: true`` and ``watch: false``, in one run.

Run: python scripts/bench_watch.py [--configs nielsen deep-relu] [--epochs N] [--repeats 2]

Each spec (``--epochs`` overrides its epochs, to make a quick run) is compared end to end with `run_comparison` into
one SQLite store in a temporary folder, once watched and once not, alternating, after a warm-up of each (one epoch,
every run: the compiled loops, for every shape of group, and the store exist, as in a user's second comparison). Prints each best time and the
ratio watched / unwatched (the issue's bound: at most 1.10), and the median of the repeats' ratios.
"""

import argparse
import statistics
import tempfile
import time

from initlab import run_comparison
from initlab.spec import ComparisonSpec
from initlab.spec_files import spec_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["nielsen", "deep-relu"], help="built-in specs or spec files")
    parser.add_argument("--epochs", type=int, default=None, help="instead of each spec's epochs")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    store = tempfile.TemporaryDirectory()
    uri = f"sqlite:///{store.name}/bench.db"
    print(f"{'spec':<12} {'runs x epochs':>13} {'watch off':>10} {'watch on':>10} {'ratio':>7} {'median ratio':>13}")
    for config in args.configs:
        spec = ComparisonSpec.from_file(spec_path(config))
        if args.epochs is not None:
            spec = spec.replace(epochs=args.epochs)
        specs = {watched: spec.replace(watch=watched) for watched in (False, True)}
        for watched, each in specs.items():  # warm-up
            run_comparison(each.replace(epochs=1), tracking_uri=uri, experiment=f"warm-{watched}")
        times = {False: [], True: []}
        for repeat in range(args.repeats):
            for watched, each in sorted(specs.items(), reverse=bool(repeat % 2)):  # off first, then on first, ...
                start = time.perf_counter()
                run_comparison(each, tracking_uri=uri, experiment=f"{config}-{watched}")
                times[watched].append(time.perf_counter() - start)
        off, on = min(times[False]), min(times[True])
        paired = statistics.median(t / u for t, u in zip(times[True], times[False]))
        print(f"{config:<12} {len(spec.runs()):>6} x {spec.epochs:<4} {off:9.1f}s {on:9.1f}s {on / off:7.3f} {paired:13.3f}")


if __name__ == "__main__":
    main()
