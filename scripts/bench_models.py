"""`keras_initlab.train` against plain `model.fit` on a user's model: the shipped small CNN.

Run: python scripts/bench_models.py [--repeats 3] [--config cnn-adam]

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
"""

import argparse

import keras

from bench_training import EpochTimer  # this script's folder is on sys.path
from initlab.comparison import ModelBuilder, load_spec_data
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cnn-adam", help="a built-in spec's name or a spec file")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
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
