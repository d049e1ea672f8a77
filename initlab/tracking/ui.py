"""The MLflow UI's view of one comparison (`view_state`) and the link that opens it (`ui_url`).

>>> ui_command("http://127.0.0.1:5000")
'open http://127.0.0.1:5000 in a browser'
"""

from __future__ import annotations

from initlab.tracking.layout import PARENT_TAG

UI_PORT = 5000
"""The port of the MLflow UI that `ui_command` starts and `ui_url` points at (``mlflow ui``'s default)."""

LEARNING_CURVES = ("val_accuracy", "val_loss", "train_loss")
"""The charts a comparison's view opens with, in this order."""

LAYER_CHARTS = ("grad_norm", "preact_std")
"""The watched statistics (`keras_initlab.watch`) charted in the view's "Layers" section, for the first, middle and
last layer, on a log scale."""


def watched_layers(depth: int) -> list[int]:
    """The first, middle and last of ``depth`` layers (1-based; fewer when ``depth < 3``).

    >>> watched_layers(30)
    [1, 15, 30]
    """
    return sorted({1, (depth + 1) // 2, depth})


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on ``uri`` (for a server: its address)."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri} --port {UI_PORT}"


def ui_url(uri: str, experiment_id: str, parent_id: str) -> str:
    """The address of one comparison's chart view in the MLflow UI (`view_state`, saved under the parent's id):
    the runs page of the experiment, model-training workflow, chart mode. On the server of ``uri``; for any
    other store, on the UI that `ui_command` starts. An MLflow that does not know shared views opens the runs page.

    >>> ui_url("sqlite:///tracking/mlflow.db", "1", "ab12")
    'http://127.0.0.1:5000/#/experiments/1/runs?viewStateShareKey=ab12&compareRunsMode=CHART&workflowType=machine_learning'
    """
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{UI_PORT}"
    return (
        f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={parent_id}"
        "&compareRunsMode=CHART&workflowType=machine_learning"
    )


def _chart(metric: str, section: str, runs: int, scale: str = "linear") -> dict:
    """One line chart of ``metric`` against the epoch (``step``) in ``section``."""
    return {
        "uuid": f"initlab-{metric.replace('/', '-')}",
        "type": "LINE",
        "metricSectionId": section,
        "displayName": metric,
        "metricKey": metric,
        "selectedMetricKeys": [metric],
        "xAxisKey": "step",
        "useGlobalXaxisKey": False,
        "selectedXAxisMetricKey": "",
        "xAxisScaleType": "linear",
        "scaleType": scale,
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "lineSmoothness": 0,
        "useGlobalLineSmoothing": False,
        "ignoreOutliers": False,
        "range": {},
        "runsCountToCompare": runs,
        "isGenerated": False,
        "deleted": False,
    }


def view_state(parent_id: str, runs: int, depth: int | None = None) -> dict:
    """One comparison's chart view, as the MLflow UI restores it from the experiment tag
    ``mlflow.sharedViewState.<key>`` (its "share view" feature; plain JSON, the form every MLflow
    that shares views reads).

    The view holds the child runs of ``parent_id`` (its search filter), grouped by the param
    ``scheme`` (per scheme the mean over seeds, with the min-max band), and opens with line
    charts of `LEARNING_CURVES` against the epoch (``step``) in a section marked as ordered, so
    that the UI adds the charts of the other metrics after them rather than in alphabetical order.
    With the ``depth`` of the watched models (their number of Dense/Conv layers), a second section, "Layers",
    holds `LAYER_CHARTS` of the first, middle and last layer (`watched_layers`), log scale, from step 0.
    ``runs`` is how many runs the charts show at most.
    """
    section, layers = "initlab-learning-curves", "initlab-layers"
    charts = [_chart(metric, section, runs) for metric in LEARNING_CURVES]
    sections = [{"uuid": section, "name": "Learning curves", "display": True, "isReordered": True}]
    if depth:
        charts += [
            _chart(f"layers/layer{k}/{stat}", layers, runs, "log")
            for stat in LAYER_CHARTS
            for k in watched_layers(depth)
        ]
        sections.append({"uuid": layers, "name": "Layers", "display": True, "isReordered": True})
    return {
        "searchFilter": f"tags.`{PARENT_TAG}` = '{parent_id}'",
        "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "param", "groupByData": "scheme"}]},
        "useGroupedValuesInCharts": True,
        "compareRunCharts": charts,
        "compareRunSections": [
            *sections,
            {"uuid": "initlab-system", "name": "System metrics", "display": True, "isReordered": False},
        ],
        "isAccordionReordered": True,
        "hideEmptyCharts": True,
    }
