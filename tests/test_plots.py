"""Every figure (`initlab.plots`): activation histograms, pre-activation std by depth, the table and histograms
from one forward pass, and the watched layers' gradient norms."""

import pytest

from initlab.plots import (
    diagnose_with_histograms,
    plot_activation_histograms,
    plot_layers,
    plot_preactivation_std_by_depth,
)
from keras_initlab import build_convnet, build_mlp
from keras_initlab.diagnostics import diagnose


def test_diagnose_with_histograms_is_both_from_one_pass(mnist_val):
    x, y = mnist_val
    model = build_mlp([784, 30, 10], scheme="he", seed=5)
    table, figure = diagnose_with_histograms(model, x[:300], y[:300], title="he")
    assert table == diagnose(model, x[:300], y[:300])
    assert [a.get_title() for a in figure.axes] == [
        a.get_title() for a in plot_activation_histograms(model, x[:300]).axes
    ]
    assert figure._suptitle.get_text() == "he"


def test_plots(mnist_val, tables, tmp_path):
    from matplotlib.figure import Figure

    x, _ = mnist_val
    figure = plot_activation_histograms(build_mlp([784, 30, 10], scheme="nielsen-large", seed=0), x[:200], "large")
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    figure.savefig(tmp_path / "hist.png")
    assert len(plot_activation_histograms(build_convnet(seed=0), x[:50]).axes) == 3

    figure = plot_preactivation_std_by_depth(tables, show_predicted=True)
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    (axes,) = figure.axes
    assert axes.get_yscale() == "log"
    labels = axes.get_legend_handles_labels()[1]
    assert len(labels) == len(tables) and any("std 0" in label for label in labels)  # zeros scheme
    figure.savefig(tmp_path / "depth.png")
    assert (tmp_path / "depth.png").stat().st_size > 0


def test_the_layers_figure_shows_the_geometric_mean_gradient_norm_by_layer_and_epoch_per_scheme():
    def run(norms):  # norms[k][e]: layer k + 1 at measurement e
        return {"val_accuracy": [0.5, 0.6], **{f"layers/layer{k + 1}/grad_norm": row for k, row in enumerate(norms)}}

    results = {
        "he": [run([[1.0, 4.0, 1.0], [1e-5, 1e-4, 0.0]]), run([[4.0, 1.0, 1.0], [1e-5, 1e-2, 0.0]])],
        "glorot": [run([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]])],
        "unwatched": [{"val_accuracy": [0.1, 0.2]}],
    }
    figure = plot_layers(results, every=5)
    panels = [axes for axes in figure.axes if axes.get_title()]
    assert [axes.get_title() for axes in panels] == ["he", "glorot"]  # a panel per watched scheme
    he = panels[0].images[0].get_array()
    assert he[0].tolist() == [2.0, 2.0, 1.0] and he[1, :2].tolist() == pytest.approx([1e-5, 1e-3])  # geometric means
    assert he.mask[1, 2]  # a norm of 0: blank on the log scale
    assert panels[0].images[0].get_extent() == [-2.5, 12.5, 2.5, 0.5]  # epochs 0, 5, 10; layer 1 on top
    assert panels[0].images[0].norm.vmin == pytest.approx(1e-5) and panels[1].images[0].norm is panels[0].images[0].norm
    with pytest.raises(ValueError, match="not watched"):
        plot_layers({"unwatched": [{"val_accuracy": [0.1]}]})
