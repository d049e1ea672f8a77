"""MLflow tracking: where a comparison's runs go, and how they get there without slowing training.

- `initlab.tracking.layout`: the tags that lay a comparison out in MLflow (parent run, child runs).
- `initlab.tracking.store`: which store (``--tracking-uri``, ``$MLFLOW_TRACKING_URI``, else
  ``tracking/mlflow.db``), the checks made before any work, the store's lock, the pending records' folder.
- `initlab.tracking.records`: a child run in memory (`ChildRun`), then as a record on local disk.
- `initlab.tracking.tracker`: `ComparisonTracker`, the MLflow requests of one comparison.
- `initlab.tracking.ui`: the chart view a comparison opens with, and its link.
- `initlab.tracking.queue`: `TrackingQueue`, every request made in order on a thread of its own.
- `initlab.tracking.process`: the *tracking process*, which the ``initlab`` command starts before
  TensorFlow loads and which then answers those requests (`RemoteTracker`).

Training never waits for MLflow, and nothing is lost when the store stops answering or the process
dies: a child run is a record on local disk as soon as it ends (`Records`), then written to MLflow;
until MLflow has it, the record stays and `ComparisonTracker.log_records` writes it when the
comparison is resumed. Requests to a tracking
server give up after `HTTP_LIMITS` (seconds, not MLflow's minutes of retries). MLflow is imported
only when used; nothing here imports Keras, TensorFlow or the library.

>>> ui_url("sqlite:///tracking/mlflow.db", "1", "ab12")[:43]
'http://127.0.0.1:5000/#/experiments/1/runs?'
"""

from initlab.tracking.layout import check_experiment
from initlab.tracking.queue import TrackingQueue
from initlab.tracking.records import ChildRun, Records, initializer_param
from initlab.tracking.store import (
    HTTP_LIMITS,
    TrackingLostError,
    TrackingUnavailableError,
    check_reachable,
    check_writable,
    http_limits,
    pending_root,
    quiet_store_logging,
    resolve_tracking_uri,
)
from initlab.tracking.tracker import ComparisonTracker
from initlab.tracking.ui import ui_command, ui_url, view_state

__all__ = [
    "HTTP_LIMITS",
    "ChildRun",
    "ComparisonTracker",
    "Records",
    "TrackingLostError",
    "TrackingQueue",
    "TrackingUnavailableError",
    "check_experiment",
    "check_reachable",
    "check_writable",
    "http_limits",
    "initializer_param",
    "pending_root",
    "quiet_store_logging",
    "resolve_tracking_uri",
    "ui_command",
    "ui_url",
    "view_state",
]
