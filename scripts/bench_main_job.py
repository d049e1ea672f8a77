"""The main job against its floor: `initlab compare CONFIG` on an existing store vs `import keras_initlab`.

Run: python scripts/bench_main_job.py [--repeats 3] [--config nielsen]

In a fresh temporary folder, one comparison first makes the default store
(``tracking/mlflow.db``; not timed). Then, ``--repeats`` times, alternately:
``python -c "import keras_initlab"`` (the floor: every command pays it) and the
README's main job, ``initlab compare CONFIG``, into that existing store, each a
new process timed from start to exit. Prints both, best of the repeats, the
ratio of the bests and the median of each repeat's ratio (the machine is
shared: compare within one run).
"""

import argparse
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
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternations; the best of each is kept")
    parser.add_argument("--config", default="nielsen", help="a built-in spec's name or a spec file")
    args = parser.parse_args()
    job = [str(INITLAB), "compare", str(spec_path(args.config).resolve())]
    floor = [sys.executable, "-c", "import keras_initlab"]
    with tempfile.TemporaryDirectory() as folder:
        seconds(job, folder)  # makes the store
        imports, jobs = [], []
        for _ in range(args.repeats):
            imports.append(seconds(floor, folder))
            jobs.append(seconds(job, folder))
    ratios = [j / i for i, j in zip(imports, jobs, strict=True)]
    print(f"import keras_initlab: best {min(imports):.2f} s  ({', '.join(f'{t:.2f}' for t in imports)})")
    print(
        f"{' '.join(Path(a).name for a in job[:2])} {Path(args.config).name} (existing store): "
        f"best {min(jobs):.2f} s  ({', '.join(f'{t:.2f}' for t in jobs)})"
    )
    print(
        f"ratio of the bests {min(jobs) / min(imports):.2f}x; median of paired ratios {statistics.median(ratios):.2f}x"
    )


if __name__ == "__main__":
    main()
