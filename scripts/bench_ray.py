"""A comparison on Ray against the same comparison here: what `--ray` costs on one machine.

Run: python scripts/bench_ray.py [--repeats 2] [--config all-schemes] [--seeds 0 1 2 3]

In a fresh temporary folder, ``--repeats`` times, alternately: ``initlab compare CONFIG --seeds ...``
(every run stacked in this process) and the same with ``--ray`` (a local Ray instance started for it:
one task per seed, all schemes of a seed stacked in it), each a new process timed from start to
exit, into the default store. Prints both, the best of each, the ratio of the bests and the median
of each repeat's ratio (the machine is shared: compare within one run). Ray's overhead is the
ratio minus one: starting the instance, a TensorFlow import in each worker, the tasks' smaller stacks.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from initlab.spec_files import spec_path

INITLAB = Path(sys.executable).parent / "initlab"


def seconds(command: list[str], cwd: str) -> float:
    start = time.perf_counter()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="alternations; the best of each is kept")
    parser.add_argument("--config", default="all-schemes", help="a built-in spec's name or a spec file")
    parser.add_argument("--seeds", default=["0", "1", "2", "3"], nargs="+")
    args = parser.parse_args()
    here = [str(INITLAB), "compare", str(spec_path(args.config).resolve()), "--seeds", *args.seeds]
    ray = here + ["--ray"]
    with tempfile.TemporaryDirectory() as folder:
        times: dict[str, list[float]] = {"here": [], "ray": []}
        for _ in range(args.repeats):
            times["here"].append(seconds(here, folder))
            times["ray"].append(seconds(ray, folder))
    ratios = [r / h for h, r in zip(times["here"], times["ray"], strict=True)]
    for name, values in times.items():
        print(f"{name:>4}: best {min(values):.2f} s  ({', '.join(f'{t:.2f}' for t in values)})")
    best = min(times["ray"]) / min(times["here"])
    print(
        f"--ray / here: ratio of the bests {best:.2f}x (overhead {best - 1:+.0%}); "
        f"median of paired ratios {statistics.median(ratios):.2f}x"
    )


if __name__ == "__main__":
    main()
