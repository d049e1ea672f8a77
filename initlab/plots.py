"""Every figure of the package, drawn one way: a matplotlib `Figure` on an Agg canvas.

No pyplot (no global state, no window); matplotlib is imported when the first
figure is drawn, so that importing the application stays light. Each function
returns the `matplotlib.figure.Figure`; save it with ``figure.savefig(path)``.

- `plot_comparison`: a comparison's validation curves, mean and min-max band over seeds.
- `plot_layers`: per scheme, the kernels' gradient norms by layer and epoch (`keras_initlab.watch`).
- `plot_activation_histograms`: per layer, the histogram of activations at initialization.
- `plot_preactivation_std_by_depth`: measured (and predicted) pre-activation std against depth.
- `diagnose_with_histograms`: `keras_initlab.diagnose`'s table and the histograms from one forward pass.
- `to_png`: a figure as PNG bytes (what tracking stores).

>>> from keras_initlab import build_mlp, load_dataset
>>> x = load_dataset("mnist-10k").x_val[:500]
>>> plot_activation_histograms(build_mlp(scheme="nielsen-large", seed=0), x).savefig("hist.png")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import keras
import numpy as np

from initlab.report import Results, curves
from keras_initlab.diagnostics import LayerDiagnostics, LayerSignals, collect_signals, tabulate


def _figure(**kwargs):
    """A `matplotlib.figure.Figure` on an Agg canvas; pyplot (and its global state) is not used."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def to_png(figure) -> bytes:
    """``figure`` drawn as a PNG file's bytes."""
    png = io.BytesIO()
    figure.savefig(png, format="png")
    return png.getvalue()


def plot_activation_histograms(model: keras.Model, x_batch, title: str | None = None, bins: int = 50):
    """One histogram panel per diagnosed layer of its activations ``a`` on ``x_batch``.

    The classic picture: tiny weights collapse every sigmoid to 0.5 (tanh/ReLU
    to 0), large ones pile the outputs up at the saturation ends. Bars show the
    fraction of all entries (examples x units); sigmoid panels span [0, 1].
    Returns the Figure (one axes per layer, up to 4 per row).
    """
    return _histograms(collect_signals(model, x_batch), model.name if title is None else title, bins)


def _histograms(signals: Sequence[LayerSignals], title: str, bins: int = 50):
    n = len(signals)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    # Fixed margins, not a layout engine, and one filled step outline per panel, not `bins` bar
    # patches: drawing stays cheap enough to do for every tracked run.
    width, height = 3.2 * cols, 2.6 * rows + 0.6
    figure = _figure(figsize=(width, height), dpi=80)
    figure.subplots_adjust(
        left=0.75 / width, right=1 - 0.15 / width, bottom=0.55 / height, top=1 - 0.75 / height, wspace=0.35, hspace=0.6
    )
    for i, signal in enumerate(signals):
        axes = figure.add_subplot(rows, cols, i + 1)
        values = signal.activations.astype(np.float64).ravel()
        value_range = (0.0, 1.0) if signal.activation == "sigmoid" else None
        counts, edges = np.histogram(values[np.isfinite(values)], bins=bins, range=value_range)
        axes.stairs(counts / values.size, edges, fill=True)
        axes.set_title(f"{signal.depth}: {signal.name} ({signal.activation})", fontsize=9)
        axes.set_xlabel("activation")
        if i % cols == 0:
            axes.set_ylabel("fraction")
    figure.suptitle(title)
    return figure


def plot_preactivation_std_by_depth(
    tables: Mapping[str, Sequence[LayerDiagnostics]], title: str | None = None, show_predicted: bool = False
):
    """Measured pre-activation std against layer depth: one line per scheme, log y axis.

    ``tables`` maps a label (e.g. a scheme name) to its `diagnose` result. A std
    of exactly 0 cannot be drawn on a log axis: those points are left out and
    the label says so. With ``show_predicted``, each scheme's predicted std is
    drawn dashed in the same colour. Returns the Figure (one axes).
    """
    if not tables:
        raise ValueError("Argument `tables` must map at least one label to a DiagnosticsTable.")
    figure = _figure(figsize=(6.0, 4.0), layout="constrained")
    axes = figure.add_subplot(1, 1, 1)
    for label, table in tables.items():
        depths = [row.depth for row in table]
        stds = np.array([row.preactivation_std for row in table], dtype=np.float64)
        zero = stds <= 0
        zero_depths = ", ".join(str(d) for d, z in zip(depths, zero, strict=True) if z)
        shown = f"{label} (std 0 at depth {zero_depths})" if zero_depths else label
        (line,) = axes.plot(depths, np.where(zero, np.nan, stds), marker="o", label=shown)
        if show_predicted:
            predicted = np.array([row.predicted_std for row in table], dtype=np.float64)
            axes.plot(depths, np.where(predicted <= 0, np.nan, predicted), linestyle="--", color=line.get_color())
    axes.set_yscale("log")
    axes.set_xlabel("layer depth")
    axes.set_ylabel("pre-activation std")
    all_depths = sorted({row.depth for table in tables.values() for row in table})
    axes.set_xticks(all_depths)
    axes.legend(fontsize=8)
    if title:
        axes.set_title(title)
    return figure


def plot_comparison(results: Results, metric: str = "val_accuracy", title: str = ""):
    """``metric`` against epoch: per scheme the mean over seeds and a min-max band (`initlab.report.curves`)."""
    figure = _figure(figsize=(7, 4.5), dpi=120)
    figure.subplots_adjust(
        left=0.1, right=0.97, bottom=0.11, top=0.92
    )  # fixed margins: a third cheaper than a layout engine
    axes = figure.add_subplot()
    for scheme, c in curves(results, metric).items():
        epochs = np.arange(1, c.shape[1] + 1)
        (line,) = axes.plot(epochs, c.mean(axis=0), label=f"{scheme} (n={c.shape[0]})")
        axes.fill_between(epochs, c.min(axis=0), c.max(axis=0), color=line.get_color(), alpha=0.2, linewidth=0)
    axes.set_xlabel("epoch")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_ylabel(metric.replace("_", " "))
    axes.set_title(title or f"{metric} by epoch: mean and min-max over seeds")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def plot_layers(results: Results, every: int = 1, title: str = ""):
    """Per scheme a panel of the kernels' gradient norms (``layers/layer<k>/grad_norm``): layer ``k`` (rows, the
    first on top) by epoch (columns: 0, ``every``, ``2 * every``, ...), the geometric mean over seeds, on one log
    colour scale for all panels; a norm of 0 (or missing) is left blank. Runs without the metric are left out.
    Raises ValueError when no run has it."""
    matrices = {}
    for scheme, histories in results.items():
        watched = [h for h in histories if "layers/layer1/grad_norm" in h]
        if watched:
            depth = sum(1 for key in watched[0] if key.startswith("layers/layer") and key.endswith("/grad_norm"))
            per_layer = [curves({scheme: watched}, f"layers/layer{k}/grad_norm")[scheme] for k in range(1, depth + 1)]
            with np.errstate(divide="ignore"):
                matrices[scheme] = np.exp(np.log(np.stack(per_layer)).mean(axis=1))  # (layers, epochs)
    if not matrices:
        raise ValueError("No run has layers/layer<k>/grad_norm: the layers were not watched.")
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import LogFormatter, NullLocator

    finite = np.concatenate([m[np.isfinite(m) & (m > 0)] for m in matrices.values()])
    norm = LogNorm(*(finite.min(), finite.max())) if finite.size else None
    width = 1.2 + 3.2 * len(matrices)
    figure = _figure(figsize=(width, 4.2), dpi=80)
    figure.subplots_adjust(left=0.7 / width, right=1 - 1.1 / width, bottom=0.13, top=0.84, wspace=0.15)
    for i, (scheme, matrix) in enumerate(matrices.items()):
        axes = figure.add_subplot(1, len(matrices), i + 1)
        shown = np.ma.masked_where(~(np.isfinite(matrix) & (matrix > 0)), matrix)
        image = axes.imshow(
            shown,
            norm=norm,
            aspect="auto",
            interpolation="nearest",
            cmap="viridis",
            extent=(-0.5 * every, (matrix.shape[1] - 0.5) * every, matrix.shape[0] + 0.5, 0.5),
        )
        axes.set_title(scheme, fontsize=10, y=1.01)  # a fixed place: matplotlib measures no tick labels for it
        axes.set_xlabel("epoch")
        axes.xaxis.get_major_locator().set_params(integer=True)
        if i == 0:
            axes.set_ylabel("layer")
        else:
            axes.tick_params(labelleft=False)
    colorbar_axes = figure.add_axes((1 - 0.95 / width, 0.13, 0.15 / width, 0.71))
    figure.colorbar(image, cax=colorbar_axes, label="kernel gradient norm")
    # Powers of ten as plain text ("1e-05"), no minor ticks: a third of the drawing time otherwise (mathtext).
    colorbar_axes.yaxis.set_major_formatter(LogFormatter())
    colorbar_axes.yaxis.set_minor_locator(NullLocator())
    figure.suptitle(title or "kernel gradient norm by layer and epoch: geometric mean over seeds")
    return figure


def diagnose_with_histograms(
    model: keras.Model, x_batch, y_batch=None, loss=None, predict: bool = True, title: str | None = None
):
    """`keras_initlab.diagnose` (``loss``, ``predict`` as there) and `plot_activation_histograms`
    from one forward pass: ``(table, figure)``."""
    signals = collect_signals(model, x_batch)
    table = tabulate(model, signals, x_batch, y_batch, loss, predict)
    return table, _histograms(signals, model.name if title is None else title)
