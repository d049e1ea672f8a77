"""Training throughput of the reference model (784-30-10 sigmoid, batch 10, mnist-10k).

Run: python scripts/bench_training.py [--repeats 3] [--stacked 1 4 16 64]

Measures samples/second of one epoch, after a warm-up epoch, for (a) the
keras_initlab trainer and (b) a plain `model.fit(batch_size=10)` on the same
model, in the same run, and prints the ratio. It also relates the rates to the
arithmetic limit: FLOPs per sample x samples/s against this machine's measured
float32 matmul rate (a 1000^3 product, all cores), in the same run.

Then K models stacked (`keras_initlab.train_stacked`, schemes cycling
over `STACK_SCHEMES`) with three mixes of seeds: one seed for all ("1"), a
grid of the 4 schemes x K/4 seeds ("K/4"), and a seed per model ("K"; every
model its own data order): total samples/s = K x 8,000 / (seconds of the second
epoch, summed over the waves train_stacked splits K into), against K separate
runs of the single-model trainer, whose total rate is the trainer's rate (a)
(measured once; K runs take K times as long), and against plain fit; ms per
model-epoch = 8,000 / total rate. By default train_stacked splits the K models
into one group per CPU core whose epochs run concurrently (waves of groups of
at most `MAX_GROUP_SIZE`); "one group" passes ``max_group_size=K, lanes=1``, to
show what the plan gains. Every measurement is repeated `--repeats` times,
interleaved, and the best is kept: the machine is shared, so compare ratios
within one run.
"""

import argparse
import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import keras
import tensorflow as tf

from keras_initlab.data import load_dataset
from keras_initlab.models import as_model_input, build_mlp, default_loss
from keras_initlab.training import resolve_device, train, train_stacked
from keras_initlab.training.planning import default_max_group_size, parallel_lanes, plan_groups

SIZES = [784, 30, 10]
BATCH = 10
STACK_SCHEMES = ("nielsen-default", "nielsen-large", "he", "uniform-inv-sqrt")


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


class GroupEpochTimer(keras.callbacks.Callback):
    """Shared by all stacked models: one interval per (wave, epoch), from the first model's
    `on_epoch_begin` to the last model's `on_epoch_end` (steps, validation, weight write-backs)."""

    def __init__(self):
        super().__init__()
        self.seconds, self.start, self.end = [], None, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.end is not None:  # the first begin after some ends: a new (wave, epoch)
            self.close()
        if self.start is None:
            self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.end = time.perf_counter()

    def close(self):
        self.seconds.append(self.end - self.start)
        self.start = self.end = None


SEED_MIXES = {"1": lambda i: 0, "K/4": lambda i: i // len(STACK_SCHEMES), "K": lambda i: i}
"""Seed of model i of K in each mix: one seed, the schemes x K/4 seeds grid, a seed per model."""


def stacked_rate(data, k: int, mix: str, one_group: bool) -> float:
    """Total samples/s of K stacked models in the second epoch; ``one_group``: all K in one group, one lane."""
    models = [
        build_mlp(SIZES, scheme=STACK_SCHEMES[i % len(STACK_SCHEMES)], l2_lambda=5.0, n_train=data.n_train, seed=i)
        for i in range(k)
    ]
    timer = GroupEpochTimer()
    plan = dict(max_group_size=k, lanes=1) if one_group else {}
    seeds = [SEED_MIXES[mix](i) for i in range(k)]
    outcomes = train_stacked(models, data, epochs=2, batch_size=BATCH, seed=seeds, callbacks=[[timer]] * k, **plan)
    assert all(isinstance(o, keras.callbacks.History) for o in outcomes), outcomes
    timer.close()
    return k * data.n_train / sum(timer.seconds[1::2])  # epochs of each wave: warm-up, measured


def plain_fit_rate(data) -> float:
    model = build_mlp(SIZES, l2_lambda=5.0, n_train=data.n_train, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=default_loss(model))
    timer = EpochTimer()
    model.fit(
        as_model_input(model, data.x_train), data.y_train, batch_size=BATCH, epochs=2, verbose=0, callbacks=[timer]
    )
    return data.n_train / timer.seconds[-1]


def flops_per_sample() -> float:
    """Training FLOPs of one sample: the forward pass (2ab + b per Dense layer a -> b), the weight gradients
    (2ab per layer) and the input gradients of every layer but the first (nothing asks for the image's)."""
    layers = list(itertools.pairwise(SIZES))
    forward = sum(2 * a * b + b for a, b in layers)
    return forward + sum(2 * a * b for a, b in layers) + sum(2 * a * b for a, b in layers[1:])


def matmul_rate(m: int, k: int, n: int, repeats: int = 200, lanes: int = 1) -> float:
    """float32 FLOP/s of an (m, k) @ (k, n) product in a compiled TensorFlow loop; with ``lanes``, that many
    loops at once on threads of their own (as `train_stacked`'s lanes run), their total rate."""
    a = tf.random.normal((m, k))
    b = tf.random.normal((k, n))

    @tf.function(jit_compile=True)
    def loop(a, b):
        acc = tf.zeros((m, n))
        for i in tf.range(repeats):
            acc += (a + tf.cast(i, tf.float32)) @ b  # depends on i: not hoisted out of the loop
        return acc

    return 2.0 * m * k * n * repeats * lanes / seconds_in_lanes(lambda: loop(a, b).numpy(), lanes)


def update_rate(rows: int, cols: int, repeats: int = 2000, lanes: int = 1) -> float:
    """Updates per second of an (rows, cols) float32 kernel by SGD with L2, ``w - lr * (g + l2 * w)``, in a
    compiled TensorFlow loop (with ``lanes``, that many loops at once, their total): memory traffic, no arithmetic
    to speak of (the kernel and its gradient read, the kernel written)."""
    w = tf.random.normal((rows, cols))
    g = tf.random.normal((rows, cols))

    @tf.function(jit_compile=True)
    def loop(w, g):
        for i in tf.range(repeats):
            w = w - 0.1 * (g + 1e-4 * tf.cast(i, tf.float32) * w)  # depends on i: not hoisted out of the loop
        return w

    return repeats * lanes / seconds_in_lanes(lambda: loop(w, g).numpy(), lanes)


def seconds_in_lanes(run, lanes: int) -> float:
    """Seconds of ``lanes`` calls of ``run`` at once on threads of their own (as `train_stacked`'s lanes run),
    after one call alone (tracing and compiling)."""
    run()
    start = time.perf_counter()
    with ThreadPoolExecutor(lanes) as pool:
        list(pool.map(lambda _: run(), range(lanes)))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each; the best is kept")
    parser.add_argument("--stacked", type=int, nargs="*", default=[1, 4, 16, 64], help="numbers of stacked models")
    args = parser.parse_args()
    data = load_dataset("mnist-10k")
    device_name = resolve_device("auto")
    cap, lanes = default_max_group_size(device_name), parallel_lanes(device_name)
    configs = [
        (k, mix, one_group)
        for k in args.stacked
        for mix in (SEED_MIXES if k > 1 else ["1"])
        for one_group in (False, True)
        if not one_group or (k > 1 and mix == "1")
    ]
    # 98% of a sample's FLOPs are the first layer's two products: with one seed, a lane of m models does them as one
    # (BATCH, 784) @ (784, 30 m) forward and one (784, BATCH) @ (BATCH, 30 m) kernel gradient per step, then updates
    # that (784, 30 m) kernel. Those, at their measured rates, `lanes` at once, bound what 16 models can reach.
    per_lane = min(cap, -(-16 // lanes))
    width = SIZES[1] * per_lane
    parts = {
        "forward": lambda: matmul_rate(BATCH, 784, width, repeats=2000, lanes=lanes),
        "gradient": lambda: matmul_rate(784, BATCH, width, repeats=2000, lanes=lanes),
        "update": lambda: update_rate(784, width, lanes=lanes),
    }
    rates: dict = {"fast": [], "plain": [], **{c: [] for c in configs}, **{part: [] for part in parts}}
    for _ in range(args.repeats):  # interleaved, so that a busy spell of the shared machine hits all alike
        rates["fast"].append(trainer_rate(data))
        rates["plain"].append(plain_fit_rate(data))
        for config in configs:
            rates[config].append(stacked_rate(data, *config))
        for part, measure in parts.items():
            rates[part].append(measure())
    best = {name: max(values) for name, values in rates.items()}
    fast, plain = best["fast"], best["plain"]
    flops = flops_per_sample()
    big = matmul_rate(1000, 1000, 1000, repeats=10)
    small = matmul_rate(BATCH, 784, 30, repeats=2000)
    print(f"plain model.fit(batch_size={BATCH}):   {plain:10.0f} samples/s")
    print(f"keras_initlab.train:               {fast:10.0f} samples/s   ratio {fast / plain:5.1f}x")
    print(f"arithmetic: {flops / 1e3:.1f} kFLOP/sample -> {fast * flops / 1e9:.2f} GFLOP/s achieved")
    print(
        f"  vs 1000^3 matmul {big / 1e9:.1f} GFLOP/s ({fast * flops / big:.1%}),"
        f" vs {BATCH}x784x30 matmul {small / 1e9:.1f} GFLOP/s ({fast * flops / small:.1%})"
    )
    forward, gradient, updates = best["forward"], best["gradient"], best["update"]
    product_flops = 2 * 784 * SIZES[1]  # per sample and model, each of the two
    products = product_flops / forward + product_flops / gradient  # seconds per model-sample
    bound = 1 / products
    bound_updated = 1 / (products + 1 / (updates * per_lane * BATCH))  # an update serves per_lane models x BATCH
    print(
        f"  16 models in {lanes} lanes of {per_lane}: a step's first-layer products alone, {lanes} at once: forward"
        f" {BATCH}x784x{width} {forward / 1e9:.1f} GFLOP/s, kernel gradient 784x{BATCH}x{width}"
        f" {gradient / 1e9:.1f} GFLOP/s: at most {bound:.0f} samples/s with nothing else in a step"
        f" (1.2M samples/s takes {1.2e6 * flops / 1e9:.1f} GFLOP/s); with the update of that 784x{width} kernel"
        f" ({1e6 * lanes / updates:.0f} us, {lanes} at once): at most {bound_updated:.0f} samples/s"
    )
    reached = best.get((16, "1", False))
    if reached:
        print(
            f"  16 stacked models, one seed: {reached:.0f} samples/s = {reached / bound:.0%} of the products' bound,"
            f" {reached / bound_updated:.0%} of the products-and-update bound"
        )
    print()
    print(
        f"stacked: total samples/s; K separate runs of keras_initlab.train = {fast:.0f} samples/s in total"
        f" (measured once, x K time); MAX_GROUP_SIZE = {cap}, lanes = {lanes}"
    )
    print(
        "|  K | seeds | groups (waves of concurrent groups) | stacked samples/s | ms per model-epoch"
        " | GFLOP/s (of 1000^3 matmul) | vs K separate train | vs plain fit |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    model = build_mlp(SIZES, l2_lambda=5.0, n_train=data.n_train, seed=0)
    for k, mix, one_group in configs:
        rate = best[(k, mix, one_group)]
        groups = (
            "one group, one lane"
            if one_group
            else " then ".join(
                " + ".join(map(str, wave)) for wave in plan_groups(model, data, k, BATCH, device_name, lanes=lanes)
            )
        )
        print(
            f"| {k:2d} | {mix} | {groups} | {rate:10.0f} | {1e3 * data.n_train / rate:5.1f} |"
            f" {rate * flops / 1e9:5.1f} ({rate * flops / big:.0%}) | {rate / fast:5.2f}x | {rate / plain:5.1f}x |"
        )


if __name__ == "__main__":
    main()
