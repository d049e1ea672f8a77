"""Training beside background Python work: what the GIL's switch interval costs the training lanes.

Run: python scripts/bench_background.py [--config all-schemes] [--epochs 10] [--repeats 3]

The spec's schemes for its first seed train stacked (`train_stacked`, one lane per core) for
``--epochs`` epochs (a) alone, (b) beside a background thread at the comparison's lower priority
(`lower_thread_priority`) running pure Python half of the time (what MLflow's SQLAlchemy and Keras'
model building do while a comparison trains), with Python's default switch interval (5 ms), and
(c) the same inside `quick_gil_handoff`, as `run_comparison` trains. Interleaved, best of
``--repeats`` and median; ratios against (a) of the same run (the machine is shared).
"""

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable

from initlab.background import BACKGROUND_SWITCH_INTERVAL, lower_thread_priority, quick_gil_handoff
from initlab.comparison import ModelBuilder, load_spec_data
from initlab.spec import ComparisonSpec
from initlab.spec_files import spec_path
from keras_initlab.training import train_stacked

BUSY_SHARE = 0.5
"""Share of the time the background thread runs Python (in 10 ms periods)."""


def busy(stop: threading.Event) -> None:
    lower_thread_priority()
    while not stop.is_set():
        start = time.perf_counter()
        while time.perf_counter() - start < 0.01 * BUSY_SHARE:
            pass
        time.sleep(0.01 * (1 - BUSY_SHARE))


def timed(train: Callable[[], None], background: bool, handoff: bool) -> float:
    stop = threading.Event()
    thread = threading.Thread(target=busy, args=(stop,)) if background else None
    if thread:
        thread.start()
    start = time.perf_counter()
    try:
        if handoff:
            with quick_gil_handoff():
                train()
        else:
            train()
        return time.perf_counter() - start
    finally:
        stop.set()
        if thread:
            thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="all-schemes", help="a built-in spec's name or a spec file")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    spec = ComparisonSpec.from_file(spec_path(args.config)).replace(epochs=args.epochs)
    data = load_spec_data(spec)
    builder = ModelBuilder(spec, data)
    seed = spec.seeds[0]

    def train(epochs: int = spec.epochs) -> None:
        models = [builder.build(scheme, seed) for scheme in spec.schemes]
        train_stacked(
            models,
            data,
            epochs=epochs,
            batch_size=spec.batch_size,
            learning_rate=spec.learning_rate,
            seed=seed,
            device=spec.device,
        )

    train(1)  # compiles the loop
    jobs = {
        "alone": (False, False),
        f"beside busy Python, switch interval {sys.getswitchinterval() * 1e3:g} ms": (True, False),
        f"beside busy Python, quick_gil_handoff ({BACKGROUND_SWITCH_INTERVAL * 1e3:g} ms)": (True, True),
    }
    times = {name: [] for name in jobs}
    for _ in range(args.repeats):
        for name, (background, handoff) in jobs.items():
            times[name].append(timed(train, background, handoff))
    base, base_median = min(times["alone"]), statistics.median(times["alone"])
    print(
        f"{len(spec.schemes)} models stacked x {spec.epochs} epochs ({args.config}), background busy {BUSY_SHARE:.0%}"
    )
    for name, measured in times.items():
        best, median = min(measured), statistics.median(measured)
        print(
            f"{name + ':':<58} best {best:5.2f} s x{best / base:.2f}, "
            f"median {median:5.2f} s x{median / base_median:.2f}"
            f"   (all: {', '.join(f'{t:.2f}' for t in measured)})"
        )


if __name__ == "__main__":
    main()
