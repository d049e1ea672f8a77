"""Time to sample each keras_initlab initializer, as a ratio to keras' HeNormal on the same shape.

Run: python scripts/bench_initializers.py [--repeats 7]
Each figure is the median of `repeats` timed calls (after one warm-up call),
including the copy to NumPy so that lazy work is counted.
"""

import argparse
import statistics
import time

import keras

from keras_initlab import BiasConstant, InverseSqrtUniform, ScaledGaussian, SparseGaussian

SHAPES = [(784, 30), (4096, 4096), (3, 3, 256, 256)]


def median_seconds(init, shape, repeats: int) -> float:
    keras.ops.convert_to_numpy(init(shape))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(init(shape))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    candidates = {
        "ScaledGaussian": ScaledGaussian(seed=keras.random.SeedGenerator(0)),
        "InverseSqrtUniform": InverseSqrtUniform(seed=keras.random.SeedGenerator(0)),
        "SparseGaussian(10)": SparseGaussian(10, seed=keras.random.SeedGenerator(0)),
        "BiasConstant": BiasConstant(),
    }
    print(f"{'shape':>18} {'initializer':>20} {'ms':>9} {'HeNormal ms':>12} {'ratio':>6}")
    for shape in SHAPES:
        base = median_seconds(keras.initializers.HeNormal(seed=keras.random.SeedGenerator(0)), shape, args.repeats)
        for name, init in candidates.items():
            t = median_seconds(init, shape, args.repeats)
            print(f"{str(shape):>18} {name:>20} {t * 1e3:9.2f} {base * 1e3:12.2f} {t / base:6.2f}")


if __name__ == "__main__":
    main()
