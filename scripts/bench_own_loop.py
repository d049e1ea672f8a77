"""Recording your own ``model.fit`` in a comparison (`initlab.Comparison`) against the same ``fit`` untracked.

Run: python scripts/bench_own_loop.py [--repeats 3] [--epochs 5]

A [784, 100, 10] ReLU MLP with Adam on ``mnist-10k`` (8,000 training images, batch 64), a fresh model per
measurement, tracked and untracked interleaved ``--repeats`` times in one process (the machine is shared: compare
ratios within one run). Rows, best of the repeats:

- ``fit`` untracked: the baseline;
- ``fit`` with ``run.callback``: the same ``fit`` inside ``comparison.run(...)`` (issue 28: at most 10% more);
- the whole run: ``comparison.run(...)`` (its step-0 diagnostics on 500 validation images) to the end of its
  ``with`` block (the record staged on disk), around the same ``fit``.

The comparison's own start and end (the store opened in the background, the summary, the plot) are printed
apart: they are paid once per comparison, not per run.
"""

import argparse
import tempfile
import time

import keras

import keras_initlab as kil
from initlab import Comparison


def model(seed: int) -> keras.Model:
    built = kil.build_mlp([784, 100, 10], activation="relu", output="softmax", scheme="he", seed=seed)
    built.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return built


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    data = kil.load_dataset("mnist-10k")
    x, x_val = data.x_train.reshape(-1, 784), data.x_val.reshape(-1, 784)

    def fit(built, callbacks) -> float:
        start = time.perf_counter()
        built.fit(
            x,
            data.y_train,
            validation_data=(x_val, data.y_val),
            epochs=args.epochs,
            batch_size=64,
            verbose=0,
            callbacks=callbacks,
        )
        return time.perf_counter() - start

    fit(model(99), [])  # warm-up: TensorFlow's first trace
    plain, tracked, whole = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        comparison = Comparison("bench-own-loop", tracking_uri=f"sqlite:///{folder}/mlflow.db", progress=None)
        comparison.__enter__()
        entered = time.perf_counter() - start
        for seed in range(args.repeats):
            plain.append(fit(model(seed), []))
            built = model(seed)
            start = time.perf_counter()
            with comparison.run("he", seed, built, x_sample=x_val[:500], y_sample=data.y_val[:500]) as run:
                tracked.append(fit(built, [run.callback]))
            whole.append(time.perf_counter() - start)
        start = time.perf_counter()
        comparison.__exit__(None, None, None)
        exited = time.perf_counter() - start
    base = min(plain)
    print(f"{args.epochs} epochs of fit, best of {args.repeats}:")
    print("| what | seconds | ratio |\n|---|---:|---:|")
    for name, values in (
        ("fit untracked", plain),
        ("fit with run.callback", tracked),
        ("the whole run (diagnostics, fit, record)", whole),
    ):
        print(f"| {name} | {min(values):.2f} | {min(values) / base:.3f} |")
    print(f"comparison entered in {entered:.2f} s, left in {exited:.2f} s (the store, the summary, the plot)")


if __name__ == "__main__":
    main()
