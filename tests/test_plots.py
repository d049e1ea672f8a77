"""Every figure (`initlab.plots`): activation histograms, pre-activation std by depth, and the table and histograms
from one forward pass."""

from initlab.plots import diagnose_with_histograms, plot_activation_histograms, plot_preactivation_std_by_depth
from keras_initlab import build_convnet, build_mlp
from keras_initlab.diagnostics import diagnose


def test_diagnose_with_histograms_is_both_from_one_pass(mnist_val):
    x, y = mnist_val
    model = build_mlp([784, 30, 10], scheme="he", seed=5)
    table, figure = diagnose_with_histograms(model, x[:300], y[:300], title="he")
    assert table == diagnose(model, x[:300], y[:300])
    assert [a.get_title() for a in figure.axes] == [a.get_title() for a in plot_activation_histograms(model, x[:300]).axes]
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
