"""A comparison's summary, as its parent run gets it: the tables, the figures and the description.

`summarize_comparison` turns the FINISHED runs' curves of a spec into ``(summary rows, files, description)``;
`summary_files` draws the files from curves grouped by scheme (what your own loop's comparison has too);
`finish_parent` puts them on the parent run and ends it.

>>> summary, files = summary_files({"he": [{"val_accuracy": [0.9, 0.95]}]}, "a title", every=0)
>>> sorted(files)
['comparison.png', 'summary.csv', 'summary.md']
"""

from __future__ import annotations

from collections.abc import Mapping

from initlab.plots import plot_comparison, plot_layers, to_png
from initlab.report import Results, summarize, to_csv, to_markdown
from initlab.spec import ComparisonSpec
from initlab.tracking import ComparisonTracker


def summarize_comparison(
    spec: ComparisonSpec, data_name: str, curves: Mapping[str, Mapping[str, list[float]]]
) -> tuple:
    """The summary of the FINISHED runs' curves (``{run key: {metric: values}}``: ``val_accuracy`` and the watched
    gradient norms), and what the parent run gets of it: ``(summary rows, files, description)``: the plots
    (``layers.png`` when the layers were watched) and the tables; the table in Markdown."""
    keys = {run.key: run.scheme.name for run in spec.runs()}
    results: dict[str, list[Mapping[str, list[float]]]] = {s.name: [] for s in spec.schemes}
    for key in sorted(curves):
        results[keys[key]].append(curves[key])
    results = {scheme: runs for scheme, runs in results.items() if runs}
    if not results:
        return [], {}, None
    title = f"{spec.name}: {spec.model.describe()} on {data_name}"
    summary, files = summary_files(results, title, spec.watch)
    # the description quotes the Markdown table summary_files made (a str among the files)
    return summary, files, f"**{title}**, {spec.epochs} epochs, validation accuracy:\n\n{files['summary.md']!s}"


def summary_files(results: Results, title: str, every: int) -> tuple[list, dict[str, str | bytes]]:
    """``(summary rows, the parent's files)`` of a comparison's ``results`` (`initlab.report.summarize`): the
    tables (``summary.csv``, ``summary.md``), ``comparison.png`` and, for layers watched every ``every`` epochs
    (0: not watched), ``layers.png`` where it can be drawn (not when no run was watched, their diagnostics having
    failed, or seeds were measured at other steps). Raises the ValueError of `summarize` for ragged curves."""
    summary = summarize(results)
    files: dict[str, str | bytes] = {
        "summary.csv": to_csv(summary),
        "summary.md": to_markdown(summary),
        "comparison.png": to_png(plot_comparison(results, title=title)),
    }
    if every:
        try:
            files["layers.png"] = to_png(plot_layers(results, every=every, title=f"{title}: kernel gradient norms"))
        except ValueError:
            pass
    return summary, files


def finish_parent(tracker: ComparisonTracker, files: dict, description: str | None, status: str) -> None:
    """The summary's files and description on the parent run, then its ``status``."""
    if files:
        tracker.log_parent_artifacts(files)
    if description is not None:
        tracker.describe_parent(description)
    tracker.finish_parent(status)
