"""Comparison results: per-epoch curves over seeds and the summary table (the plot is `initlab.plots.plot_comparison`).

A comparison's results are ``{scheme: [history, ...]}`` with one Keras-style
history dict (``{"val_accuracy": [...], ...}``, one value per epoch) per seed.

>>> results = {"a": [{"val_accuracy": [0.5, 0.8]}, {"val_accuracy": [0.6, 0.9]}]}
>>> summarize(results)[0].final
0.85
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Mapping, Sequence

import numpy as np

Results = Mapping[str, Sequence[Mapping[str, Sequence[float]]]]


def curves(results: Results, metric: str = "val_accuracy") -> dict[str, np.ndarray]:
    """``{scheme: array (seeds, epochs)}`` of one metric; every seed must have the same number of epochs."""
    out = {}
    for scheme, histories in results.items():
        lengths = {len(h[metric]) for h in histories}
        if len(lengths) != 1:
            raise ValueError(f"Scheme {scheme!r}: seeds have different numbers of epochs {sorted(lengths)}.")
        out[scheme] = np.array([h[metric] for h in histories], dtype=np.float64)
    return out


@dataclasses.dataclass(frozen=True)
class SchemeSummary:
    """Mean validation accuracy of one scheme over seeds, and how fast it gets there.

    ``epochs_to_90``/``epochs_to_95``: the first epoch (1-based) at which the
    mean curve reaches 90% / 95% of the best final accuracy of the comparison
    (the highest mean final accuracy over schemes); ``None`` if never.
    """

    scheme: str
    seeds: int
    epoch_1: float
    epoch_5: float | None
    final: float
    epochs_to_90: int | None
    epochs_to_95: int | None


def _first_epoch_reaching(curve: np.ndarray, level: float) -> int | None:
    hits = np.flatnonzero(curve >= level)
    return int(hits[0]) + 1 if hits.size else None


def summarize(results: Results, metric: str = "val_accuracy") -> list[SchemeSummary]:
    """One `SchemeSummary` per scheme, in the order of ``results``."""
    means = {scheme: c.mean(axis=0) for scheme, c in curves(results, metric).items()}
    best = max(float(m[-1]) for m in means.values())
    return [
        SchemeSummary(
            scheme=scheme,
            seeds=len(results[scheme]),
            epoch_1=round(float(mean[0]), 6),
            epoch_5=round(float(mean[4]), 6) if len(mean) >= 5 else None,
            final=round(float(mean[-1]), 6),
            epochs_to_90=_first_epoch_reaching(mean, 0.90 * best),
            epochs_to_95=_first_epoch_reaching(mean, 0.95 * best),
        )
        for scheme, mean in means.items()
    ]


_COLUMNS = ("scheme", "seeds", "epoch_1", "epoch_5", "final", "epochs_to_90", "epochs_to_95")


def to_markdown(rows: Sequence[SchemeSummary]) -> str:
    """The summary as a Markdown table (accuracies with 4 decimals, ``-`` for ``None``)."""

    def cell(value) -> str:
        if value is None:
            return "-"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(cell(getattr(r, c)) for c in _COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[SchemeSummary]) -> str:
    """The summary as CSV with a header row; ``None`` is an empty cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_COLUMNS)
    writer.writerows([["" if getattr(r, c) is None else getattr(r, c) for c in _COLUMNS] for r in rows])
    return buffer.getvalue()


def paired_difference(
    results: Results, baseline: str, other: str, epoch: int | None = None, metric: str = "val_accuracy"
) -> tuple[float, float, int]:
    """``(mean, standard error, n)`` of ``other - baseline`` at ``epoch`` (1-based; default the last) over the seeds:
    the two schemes' histories are paired by position (the seeds in one order, as a comparison lists them), the
    standard error ``std(differences, ddof=1) / sqrt(n)``; both rounded to 6 decimals.

    >>> results = {"a": [{"val_accuracy": [0.5, 0.8]}, {"val_accuracy": [0.6, 0.9]}],
    ...            "b": [{"val_accuracy": [0.6, 0.8]}, {"val_accuracy": [0.6, 0.92]}]}
    >>> paired_difference(results, "a", "b", epoch=1)
    (0.05, 0.05, 2)
    """
    data = curves({scheme: results[scheme] for scheme in (baseline, other)}, metric)
    if data[baseline].shape != data[other].shape:
        raise ValueError(
            f"{baseline} and {other} must have the same seeds and epochs to be paired; got "
            f"{data[baseline].shape} and {data[other].shape} (seeds, epochs)"
        )
    column = data[other].shape[1] - 1 if epoch is None else epoch - 1
    differences = data[other][:, column] - data[baseline][:, column]
    n = len(differences)
    spread = float(np.std(differences, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return round(float(differences.mean()), 6), round(spread, 6), n


def epoch_table(results: Results, metric: str = "val_accuracy") -> str:
    """A plain-text per-epoch table: for each scheme the mean and [min, max] over seeds."""
    data = curves(results, metric)
    epochs = max(c.shape[1] for c in data.values())
    header = f"{'epoch':>5} " + " ".join(f"{scheme:>28}" for scheme in data)
    lines = [header]
    for e in range(epochs):
        cells = [f"{c[:, e].mean():.4f} [{c[:, e].min():.4f}, {c[:, e].max():.4f}]" for c in data.values()]
        lines.append(f"{e + 1:>5} " + " ".join(f"{cell:>28}" for cell in cells))
    return "\n".join(lines)
