"""How a comparison is laid out in MLflow: the tags that hold it together.

One experiment per comparison name; one parent run per invocation (tag ``initlab.role =
comparison``, named ``<spec> YYYY-MM-DD HH:MM``, its description the summary table); one nested
child run per (scheme, seed) (tag ``mlflow.parentRunId``), all children with the same param and
metric names so that the MLflow UI's charts line them up. Per-epoch metrics use ``step`` = epoch
number (1-based); each child also holds ``final_val_accuracy`` and ``best_val_accuracy``; the
diagnostics of the untrained model (`keras_initlab.diagnostics`) are logged at step 0 as
``init/layer<depth>/<metric>``, with their table and activation histograms as artifacts under
``init/``. The layers' statistics during training (`keras_initlab.watch`) are
``layers/layer<depth>/<stat>`` at step 0 (the diagnostics' values) and after every epoch; the parent holds
``layers.png`` (the gradient norms by layer and epoch). The experiment carries a saved chart view
(`initlab.tracking.ui`): the runs grouped by scheme, the learning curves first, then the layers.

>>> PARENT_TAG
'mlflow.parentRunId'
"""

import re

from initlab.messages import shown
from initlab.spec_files import SpecError

ROLE_TAG = "initlab.role"
"""``comparison`` on a parent run."""
SPEC_HASH_TAG = "initlab.spec_hash"
"""The spec's hash (`initlab.spec.ComparisonSpec.hash`) on parent and child runs: ``--resume`` finds a parent by it."""
RUN_KEY_TAG = "initlab.run_key"
"""``<scheme>/seed=<seed>`` on a child run."""
FAILURE_TAG = "initlab.failure"
"""Why a child run failed or was killed."""
VERSION_TAG = "initlab.version"
DIAGNOSTICS_TAG = "initlab.diagnostics"
"""Why a child run has no step-0 diagnostics."""
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
MAX_TAG_LENGTH = 4900
"""Tag values are cut to this length (older MLflow servers accept 5000 characters, MLflow 3 8000)."""


SUMMARY_METRICS = re.compile(r"val_accuracy|layers/layer\d+/grad_norm")
"""The metrics of a FINISHED child run that its parent's summary and figures are made of."""


MAX_EXPERIMENT_NAME = 256
"""Longest experiment name: what MLflow's SQL store keeps (``experiments.name``, 256 characters)."""


def check_experiment(name: str) -> str:
    """``name`` if it can name an MLflow experiment here: one line of at most `MAX_EXPERIMENT_NAME` printable
    characters, without ``/`` (a folder separator in the paths and links made of it)."""
    if (
        not isinstance(name, str)
        or not name.strip()
        or not name.isprintable()
        or "/" in name
        or len(name) > MAX_EXPERIMENT_NAME
    ):
        raise SpecError(
            f"experiment {shown(name)}: give a name of at most {MAX_EXPERIMENT_NAME} printable "
            "characters on one line, without '/'"
        )
    return name
