"""The test suite against its budget: the whole suite and the inner loop, in multiples of the package's import.

Run: python scripts/bench_suite.py [--repeats 3] [--skip-full]

Times ``python -c "import keras_initlab"`` (best of ``--repeats``, before and after the suites: the floor every
test process pays), then the README's test command (``python -m pytest -q``, the whole suite) and the inner loop
(``python -m pytest -q -m "not integration"``), each a new process timed from start to exit, and prints each as a
multiple of the import. The budget (issue 26): the whole suite in at most 40 imports, the inner loop in at most 12.
The machine is shared: compare ratios within one run.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="imports timed before and after the suites")
    parser.add_argument("--skip-full", action="store_true", help="the inner loop only")
    args = parser.parse_args()
    floor = [sys.executable, "-c", "import keras_initlab"]
    imports = [seconds(floor) for _ in range(args.repeats)]
    suites = {
        "inner loop: pytest -m 'not integration'": [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not integration",
        ]
    }
    if not args.skip_full:
        suites["whole suite: pytest"] = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    times = {name: seconds(command) for name, command in suites.items()}
    imports += [seconds(floor) for _ in range(args.repeats)]
    best = min(imports)
    print(f"import keras_initlab: best {best:.2f} s  ({', '.join(f'{t:.2f}' for t in imports)})")
    for name, elapsed in times.items():
        print(f"{name}: {elapsed:.0f} s = {elapsed / best:.1f} imports")


if __name__ == "__main__":
    main()
