"""`LocalRunner`: a comparison's runs trained on this machine, the next group prepared while one trains.

For the MLP with plain SGD (`initlab.spec.ComparisonSpec.stacks`), runs train side by side in stacked
groups of up to one wave (`keras_initlab.training.planning.wave_size`), any schemes and seeds
(`keras_initlab.training.train_stacked`; the runs of one seed share their mini-batches); every other
run trains alone (`keras_initlab.training.train`). The next group's models and step-0 diagnostics are
made on a thread of lower priority while a group trains; the first group's diagnostics on copies of its
untrained models, so that it trains at once.

>>> with LocalRunner(builder, device, stack=True) as runner:                           # doctest: +SKIP
...     curves, failures = runner.train(runner.groups(spec.runs()), queue, shared, False, bar, interrupts)
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from initlab.background import lower_thread_priority
from initlab.comparison.builder import ModelBuilder
from initlab.comparison.children import diagnose_copies, prepare, prepare_diagnosed
from initlab.comparison.group import train_group
from initlab.comparison.progress import Interrupts, Progress
from initlab.spec import Run
from initlab.tracking import TrackingQueue
from keras_initlab.training.planning import wave_size


def groups(runs: list[Run], stack: bool, size: int) -> list[list[Run]]:
    """Runs trained together: up to ``size`` runs, any schemes and seeds, in one `train_stacked` call
    (the runs of one seed share their mini-batches), or one by one."""
    if not stack:
        return [[run] for run in runs]
    return [runs[i : i + size] for i in range(0, len(runs), size)]


class LocalRunner:
    """Trains groups of runs here (`groups`, `train`); a context that ends with its preparing thread."""

    needs_parent = False
    """Whether the parent run must exist before training starts (not here: the runs are handed over when they end)."""

    def __init__(self, builder: ModelBuilder, device: str, stack: bool):
        self.builder = builder
        self.stack, self.size = stack and builder.spec.stacks, wave_size(device)
        self._preparer = ThreadPoolExecutor(1, thread_name_prefix="initlab-prepare", initializer=lower_thread_priority)

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc_info) -> None:
        self._preparer.shutdown(wait=True)

    def groups(self, runs: list[Run]) -> list[list[Run]]:
        """``runs`` in the groups they train in (`groups`)."""
        return groups(runs, self.stack, self.size)

    def train(
        self,
        groups: list[list[Run]],
        queue: TrackingQueue,
        shared: dict,
        histograms: bool,
        bar: Progress,
        interrupts: Interrupts,
    ) -> tuple[dict, dict]:
        """Trains ``groups`` in turn (`train_group`), each run handed to ``queue`` when it ends. Returns
        ``({run key: its summary curves} of the FINISHED runs, {run key: failure})``
        (`initlab.tracking.ChildRun.summary_curves`). On any error the groups
        not yet prepared are dropped, and the error raised."""
        builder, preparer = self.builder, self._preparer
        curves, failures, prepared = {}, {}, None
        try:
            for i, group in enumerate(groups):
                interrupts.check()
                queue.check()
                if i == 0:  # the first group trains at once; its step-0 diagnostics are made on copies meanwhile
                    models, children, steps = prepare(builder, shared, group)
                    weights = [model.get_weights() for model in models]
                    initial = preparer.submit(diagnose_copies, builder, group, weights, steps, histograms)
                else:
                    (models, children, _), initial = prepared.result(), None
                if i + 1 < len(groups):  # the next group's models and diagnostics while this one trains
                    prepared = preparer.submit(prepare_diagnosed, builder, shared, groups[i + 1], histograms)
                failures.update(train_group(builder, group, models, children, bar, queue, initial))
                curves.update(
                    {child.run_key: child.summary_curves() for child in children if child.status == "FINISHED"}
                )
                bar.finish(len(group))
        except BaseException:
            preparer.shutdown(wait=False, cancel_futures=True)
            raise
        return curves, failures
