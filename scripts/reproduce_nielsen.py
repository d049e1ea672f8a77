"""Reproduce Nielsen's weight-initialization experiment (Neural Networks and Deep Learning, ch. 3).

Trains [784, HIDDEN, 10] sigmoid networks with the summed sigmoid cross-entropy,
L2 lambda = 5.0, plain SGD eta = 0.1, mini-batch 10, for `nielsen-default`
(N(0, 1/n_in) weights) and `nielsen-large` (N(0, 1) weights), one run per seed;
prints the validation accuracy per epoch (mean [min, max] over seeds) and writes
a PNG plot.

Run: python scripts/reproduce_nielsen.py --dataset mnist-10k --hidden 30 --seeds 0 1 2 3 4 --epochs 30
"""

import argparse
import time

from initlab.plots import plot_comparison
from initlab.report import epoch_table, summarize, to_markdown
from keras_initlab import build_mlp, load_dataset, train

SCHEMES = ("nielsen-default", "nielsen-large")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist-10k", choices=["mnist-10k", "mnist"])
    parser.add_argument("--data-dir", default=None, help="directory with the full MNIST files (for --dataset mnist)")
    parser.add_argument("--hidden", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default="nielsen.png", help="where to write the plot")
    args = parser.parse_args()

    data = load_dataset(args.dataset, data_dir=args.data_dir)
    results = {scheme: [] for scheme in SCHEMES}
    start = time.perf_counter()
    for scheme in SCHEMES:
        for seed in args.seeds:
            model = build_mlp([784, args.hidden, 10], scheme=scheme, l2_lambda=5.0, n_train=data.n_train, seed=seed)
            history = train(model, data, epochs=args.epochs, batch_size=10, learning_rate=0.1, seed=seed)
            results[scheme].append(history.history)
            print(f"{scheme} seed {seed}: final val_accuracy {history.history['val_accuracy'][-1]:.4f}", flush=True)
    print(
        f"\n{len(SCHEMES) * len(args.seeds)} runs in {time.perf_counter() - start:.0f} s on {data.name} "
        f"({data.n_train} train / {data.n_val} validation)\n"
    )
    print(epoch_table(results))
    print()
    print(to_markdown(summarize(results)))
    title = f"[784, {args.hidden}, 10] sigmoid on {data.name}: validation accuracy, {len(args.seeds)} seeds"
    plot_comparison(results, title=title).savefig(args.out)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
