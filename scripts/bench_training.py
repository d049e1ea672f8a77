"""Training throughput of the reference model (784-30-10 sigmoid, batch 10, mnist-10k).

Run: python scripts/bench_training.py [--repeats 3]

Measures samples/second of one epoch, after a warm-up epoch, for (a) the
keras_initlab trainer and (b) a plain `model.fit(batch_size=10)` on the same
model, in the same run, and prints the ratio. It also relates the trainer's rate
to the arithmetic limit: FLOPs per sample x samples/s against this machine's
measured float32 matmul rate.
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from keras_initlab.data import load_dataset
from keras_initlab.models import build_mlp, default_loss
from keras_initlab.training import as_model_input, train

SIZES = [784, 30, 10]
BATCH = 10


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch (training steps and, for `train`, the validation pass)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def trainer_rate(data) -> float:
    model = build_mlp(SIZES, l2_lambda=5.0, n_train=data.n_train, seed=0)
    timer = EpochTimer()
    train(model, data, epochs=2, batch_size=BATCH, seed=0, callbacks=[timer])
    return data.n_train / timer.seconds[-1]


def plain_fit_rate(data) -> float:
    model = build_mlp(SIZES, l2_lambda=5.0, n_train=data.n_train, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=default_loss(model))
    timer = EpochTimer()
    model.fit(as_model_input(model, data.x_train), data.y_train, batch_size=BATCH, epochs=2, verbose=0,
              callbacks=[timer])
    return data.n_train / timer.seconds[-1]


def flops_per_sample() -> float:
    """Forward multiply-adds x 2, and the backward pass at twice the forward cost."""
    forward = sum(2 * a * b + b for a, b in zip(SIZES, SIZES[1:]))
    return 3.0 * forward


def matmul_rate(m: int, k: int, n: int, repeats: int = 200) -> float:
    """float32 FLOP/s of an (m, k) @ (k, n) product in a compiled TensorFlow loop."""
    a = tf.random.normal((m, k))
    b = tf.random.normal((k, n))

    @tf.function(jit_compile=True)
    def loop(a, b):
        acc = tf.zeros((m, n))
        for i in tf.range(repeats):
            acc += (a + tf.cast(i, tf.float32)) @ b  # depends on i: not hoisted out of the loop
        return acc

    loop(a, b).numpy()
    start = time.perf_counter()
    loop(a, b).numpy()
    return 2.0 * m * k * n * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each; the best is kept")
    args = parser.parse_args()
    data = load_dataset("mnist-10k")
    fast = max(trainer_rate(data) for _ in range(args.repeats))
    plain = max(plain_fit_rate(data) for _ in range(args.repeats))
    flops = flops_per_sample()
    big = matmul_rate(1000, 1000, 1000, repeats=10)
    small = matmul_rate(BATCH, 784, 30, repeats=2000)
    print(f"plain model.fit(batch_size={BATCH}):   {plain:10.0f} samples/s")
    print(f"keras_initlab.train:               {fast:10.0f} samples/s   ratio {fast / plain:5.1f}x")
    print(f"arithmetic: {flops / 1e3:.0f} kFLOP/sample -> {fast * flops / 1e9:.2f} GFLOP/s achieved")
    print(f"  vs 1000^3 matmul {big / 1e9:.1f} GFLOP/s ({fast * flops / big:.1%}),"
          f" vs {BATCH}x784x30 matmul {small / 1e9:.1f} GFLOP/s ({fast * flops / small:.1%})")


if __name__ == "__main__":
    main()
