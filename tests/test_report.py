"""Summary table and comparison plot computed from per-epoch histories."""

import csv
import io

import numpy as np
import pytest

from initlab.plots import plot_comparison
from initlab.report import curves, epoch_table, paired_difference, summarize, to_csv, to_markdown

RESULTS = {
    "fast": [
        {"val_accuracy": [0.80, 0.90, 0.92, 0.93, 0.94, 0.95]},
        {"val_accuracy": [0.84, 0.92, 0.94, 0.95, 0.96, 0.95]},
    ],
    "slow": [
        {"val_accuracy": [0.10, 0.30, 0.60, 0.80, 0.85, 0.90]},
        {"val_accuracy": [0.20, 0.50, 0.70, 0.86, 0.89, 0.92]},
    ],
}


def test_summary_uses_means_over_seeds_and_the_best_final_accuracy():
    fast, slow = summarize(RESULTS)
    assert (fast.scheme, fast.seeds) == ("fast", 2)
    assert (
        fast.epoch_1 == pytest.approx(0.82)
        and fast.epoch_5 == pytest.approx(0.95)
        and fast.final == pytest.approx(0.95)
    )
    assert slow.final == pytest.approx(0.91)
    # 90% of the best final (0.95) is 0.855: fast's mean is 0.82, then 0.91 (epoch 2); slow's first >= 0.855 is 0.87
    # (epoch 5).
    assert fast.epochs_to_90 == 2 and slow.epochs_to_90 == 5
    # 95% of 0.95 is 0.9025: fast at epoch 2 (0.91); slow only at its last epoch (0.91, epoch 6).
    assert fast.epochs_to_95 == 2 and slow.epochs_to_95 == 6


def test_never_reaching_a_level_is_none_and_short_runs_have_no_epoch_5():
    rows = summarize({"a": [{"val_accuracy": [0.9, 1.0]}], "b": [{"val_accuracy": [0.1, 0.2]}]})
    assert rows[1].epochs_to_90 is None and rows[1].epoch_5 is None
    assert "| b | 1 | 0.1000 | - | 0.2000 | - | - |" in to_markdown(rows)


def test_csv_round_trips_the_numbers():
    rows = summarize(RESULTS)
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [r["scheme"] for r in parsed] == ["fast", "slow"]
    assert float(parsed[1]["final"]) == rows[1].final


def test_curves_reject_ragged_histories():
    with pytest.raises(ValueError, match="different numbers of epochs"):
        curves({"a": [{"val_accuracy": [1.0]}, {"val_accuracy": [1.0, 1.0]}]})


def test_epoch_table_and_plot():
    table = epoch_table(RESULTS).splitlines()
    assert len(table) == 7 and "0.8200 [0.8000, 0.8400]" in table[1]
    fig = plot_comparison(RESULTS)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["fast (n=2)", "slow (n=2)"]
    np.testing.assert_allclose(
        ax.get_lines()[1].get_ydata(), np.mean([h["val_accuracy"] for h in RESULTS["slow"]], axis=0)
    )


def test_a_paired_difference_is_the_mean_of_the_seeds_differences_with_its_standard_error():
    results = {
        "zero": [{"val_accuracy": [0.90, 0.95]}, {"val_accuracy": [0.80, 0.97]}, {"val_accuracy": [0.85, 0.96]}],
        "bias": [{"val_accuracy": [0.91, 0.95]}, {"val_accuracy": [0.83, 0.96]}, {"val_accuracy": [0.85, 0.98]}],
    }
    differences = np.array([0.01, 0.03, 0.0])
    mean, error, n = paired_difference(results, "zero", "bias", epoch=1)
    assert (mean, n) == (pytest.approx(differences.mean(), abs=1e-6), 3)  # rounded to 6 decimals
    assert error == pytest.approx(np.std(differences, ddof=1) / np.sqrt(3), abs=1e-6)
    assert paired_difference(results, "zero", "bias")[0] == pytest.approx(
        np.mean([0.0, -0.01, 0.02]), abs=1e-6
    )  # last epoch
    with pytest.raises(ValueError, match="same seeds and epochs to be paired"):
        paired_difference({**results, "bias": results["bias"][:2]}, "zero", "bias")
