"""`keras_initlab.train` against plain `model.fit` on a user's model: the shipped small CNN.

Run: python scripts/bench_models.py [--repeats 3] [--config cnn-adam] | --comparisons [--baseline DIR] [--repeats 2]
     | --fixed-cost [--repeats 3]

The model is `keras_initlab/examples/models/small_cnn.py` (the factory of the ``cnn-adam`` spec), trained on
``mnist-10k`` at the spec's batch size with a fresh Adam (lr 1e-3) per measurement. Rows:

- plain ``model.fit`` (Keras resolves ``jit_compile="auto"``; on a CPU-only TensorFlow
  machine that is no XLA), the baseline;
- ``train`` as a comparison calls it (``jit_compile="auto"``: one compiled loop per epoch,
  without XLA for a model with convolutions on the CPU);
- ``train(jit_compile=True)``: the same loop compiled by XLA, to show why "auto" leaves it off
  for convolutions on the CPU.

Each row is the seconds of one epoch (training steps and the validation pass, 8,000 + 2,000
images) after a warm-up epoch; measurements are interleaved, ``--repeats`` times, and the best is
kept (the machine is shared: compare ratios within one run).

With ``--comparisons [--baseline DIR]``: whole comparisons instead, each ``initlab compare ...`` a new process timed
from start to exit, into a store made before the clock starts, this checkout alternated ``--repeats`` times with
the checkout at ``DIR`` (an older commit, run with ``PYTHONPATH=DIR``; a checkout from before 0.5.0 through its
launcher ``keras_initlab_cli``), best of the repeats:

- ``initlab compare deep-relu`` and ``initlab compare cnn-adam`` end to end;
- the fixed cost of a ``deep-relu`` run after the first: ``--epochs 1`` with seeds ``0 1 2`` (12 runs) against
  seed ``0`` (4 runs) is 8 runs more, less their 8 epochs (the cost of a run-epoch from ``--epochs 2`` against
  ``--epochs 1``, 12 runs).

With ``--fixed-cost [--repeats 3]``: that fixed cost without the commands' TensorFlow import (whose 5-8 s vary
more than 8 runs cost): in this process, as ``initlab compare`` runs it (`run_comparison`, MLflow's requests
answered by a tracking process, `bench_watch.timed`), after a warm-up comparison that traced each lane's loop, the
same three ``deep-relu`` comparisons alternated (12 runs x 3 epochs for the run-epoch), best of the repeats.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras

from bench_training import EpochTimer  # this script's folder is on sys.path
from bench_watch import timed
from initlab.comparison import ModelBuilder, load_spec_data, run_comparison
from initlab.spec import ComparisonSpec
from initlab.spec_files import spec_path
from keras_initlab import train
from keras_initlab.models import as_model_input
from keras_initlab.training import resolve_device


def fit_epoch(build, data, batch_size) -> float:
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, x_val = as_model_input(model, data.x_train), as_model_input(model, data.x_val)
    timer = EpochTimer()
    model.fit(
        x,
        data.y_train,
        batch_size=batch_size,
        epochs=2,
        validation_data=(x_val, data.y_val),
        callbacks=[timer],
        verbose=0,
    )
    return timer.seconds[-1]


def train_epoch(build, data, batch_size, jit_compile) -> float:
    timer = EpochTimer()
    train(
        build(),
        data,
        epochs=2,
        batch_size=batch_size,
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.sparse_categorical_crossentropy,
        callbacks=[timer],
        jit_compile=jit_compile,
    )
    return timer.seconds[-1]


COMMANDS = {  # name -> the arguments of `initlab compare`
    "deep-relu": ["deep-relu"],
    "cnn-adam": ["cnn-adam"],
    "deep-relu, 4 runs, 1 epoch": ["deep-relu", "--seeds", "0", "--epochs", "1"],
    "deep-relu, 12 runs, 1 epoch": ["deep-relu", "--seeds", "0", "1", "2", "--epochs", "1"],
    "deep-relu, 12 runs, 2 epochs": ["deep-relu", "--seeds", "0", "1", "2", "--epochs", "2"],
}


def compare_seconds(arguments: list[str], checkout: Path | None, folder: str) -> float:
    """Seconds of one ``initlab compare`` process, from ``checkout`` (None: this one), into the store in
    ``folder``."""
    if checkout is None:
        command, env = [sys.executable, "-m", "initlab", "compare", *arguments], dict(os.environ)
    else:
        launcher = ["-c", "import keras_initlab_cli; keras_initlab_cli.main()", "compare"]  # reads sys.argv
        if not (checkout / "keras_initlab_cli.py").exists():
            launcher = ["-m", "initlab", "compare"]
        command, env = [sys.executable, *launcher, *arguments], {**os.environ, "PYTHONPATH": str(checkout)}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
    start = time.perf_counter()
    subprocess.run(command, cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def fixed_cost_of(four_runs: float, twelve_runs: float, run_epoch: float) -> float:
    """The fixed cost of a run after the first: 12 runs of 1 epoch against 4 (8 runs more), less their 8 epochs."""
    return (twelve_runs - four_runs) / 8 - run_epoch


def comparisons(repeats: int, baseline: Path | None) -> None:
    sides = {"this checkout": None, **({f"baseline {baseline}": baseline} if baseline else {})}
    best = {(side, name): float("inf") for side in sides for name in COMMANDS}
    with tempfile.TemporaryDirectory() as folder:
        for side, checkout in sides.items():  # each side's store made first (not timed)
            os.makedirs(f"{folder}/{side}")
            compare_seconds(COMMANDS["deep-relu, 4 runs, 1 epoch"], checkout, f"{folder}/{side}")
        for _ in range(repeats):
            for name, arguments in COMMANDS.items():
                for side, checkout in sides.items():
                    seconds = compare_seconds(arguments, checkout, f"{folder}/{side}")
                    best[side, name] = min(best[side, name], seconds)
                    print(f"  {side}: {name}: {seconds:.2f} s", flush=True)
    print("| | " + " | ".join(sides) + (" | baseline / this |" if baseline else " |"))
    print("|---|" + "---:|" * (len(sides) + (1 if baseline else 0)))
    rows = {name: {side: best[side, name] for side in sides} for name in ("deep-relu", "cnn-adam")}
    rows["deep-relu: fixed cost of a run after the first"] = {
        side: fixed_cost_of(
            best[side, "deep-relu, 4 runs, 1 epoch"],
            best[side, "deep-relu, 12 runs, 1 epoch"],
            (best[side, "deep-relu, 12 runs, 2 epochs"] - best[side, "deep-relu, 12 runs, 1 epoch"]) / 12,
        )
        for side in sides
    }
    for name, values in rows.items():
        cells = [f"{values[side]:.2f} s" for side in sides]
        if baseline:
            cells.append(f"{values[f'baseline {baseline}'] / values['this checkout']:.2f}x")
        print(f"| {name} | " + " | ".join(cells) + " |")


def fixed_cost(repeats: int) -> None:
    spec = ComparisonSpec.from_file(spec_path("deep-relu"))
    shapes = {
        "4 runs x 1 epoch": spec.replace(seeds=[0], epochs=1),
        "12 runs x 1 epoch": spec.replace(seeds=[0, 1, 2], epochs=1),
        "12 runs x 3 epochs": spec.replace(seeds=[0, 1, 2], epochs=3),
    }
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        run_comparison(shapes["4 runs x 1 epoch"], tracking_uri=uri, experiment="warm-up")  # the lanes' loops
        best = {name: float("inf") for name in shapes}
        for _ in range(repeats):
            for name, each in shapes.items():
                seconds, _ = timed(each, uri, name, "command")
                best[name] = min(best[name], seconds)
                print(f"  deep-relu, {name}: {seconds:.2f} s", flush=True)
    run_epoch = (best["12 runs x 3 epochs"] - best["12 runs x 1 epoch"]) / 24
    fixed = fixed_cost_of(best["4 runs x 1 epoch"], best["12 runs x 1 epoch"], run_epoch)
    print("| deep-relu, in one process | best |\n|---|---:|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} s |")
    print(f"| a run-epoch | {run_epoch:.3f} s |\n| **fixed cost of a run after the first** | **{fixed:.3f} s** |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cnn-adam", help="a built-in spec's name or a spec file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--comparisons", action="store_true", help="time whole `initlab compare` commands instead")
    parser.add_argument("--baseline", type=Path, help="with --comparisons: a checkout to time against")
    parser.add_argument("--fixed-cost", action="store_true", help="a deep-relu run's fixed cost, in this process")
    args = parser.parse_args()
    if args.fixed_cost:
        fixed_cost(args.repeats)
        return
    if args.comparisons:
        comparisons(args.repeats, args.baseline)
        return
    spec = ComparisonSpec.from_file(spec_path(args.config))
    data = load_spec_data(spec)
    builder = ModelBuilder(spec, data)
    scheme = spec.schemes[0]

    def build():
        return builder.build(scheme, seed=0)

    print(
        f"model: {spec.model.describe()}, {build().count_params()} parameters; batch {spec.batch_size}; "
        f"device {resolve_device(spec.device)}; Keras {keras.__version__}"
    )
    rows = {
        "plain model.fit": lambda: fit_epoch(build, data, spec.batch_size),
        'train (jit_compile="auto")': lambda: train_epoch(build, data, spec.batch_size, "auto"),
        "train (jit_compile=True, XLA)": lambda: train_epoch(build, data, spec.batch_size, True),
    }
    best = {name: float("inf") for name in rows}
    for _ in range(args.repeats):
        for name, measure in rows.items():
            best[name] = min(best[name], measure())
    baseline = best["plain model.fit"]
    print("| trainer | s per epoch | samples/s | vs plain fit |\n|---|---:|---:|---:|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.3f} | {data.n_train / seconds:,.0f} | {baseline / seconds:.2f}x |")


if __name__ == "__main__":
    main()
