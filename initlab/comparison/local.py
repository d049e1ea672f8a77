"""`LocalRunner`: a comparison's runs trained on this machine, in lanes, the next groups prepared while some train.

For the MLP with plain SGD (`initlab.spec.ComparisonSpec.stacks`), runs train side by side in stacked
groups of up to one wave (`keras_initlab.training.planning.wave_size`), any schemes and seeds, one group at a
time (`keras_initlab.training.train_stacked`, which keeps every core busy itself; the runs of one seed share
their mini-batches). Every other run trains alone (`keras_initlab.training.train`), in as many lanes as the
cores and the memory plan allow (`keras_initlab.training.planning.lanes_for`): a thread each, with a compiled
loop of its own that the lane's later runs of the architecture reuse; each lane makes its runs' models and
step-0 diagnostics itself, while the others train. With one lane (stacked groups), the next group's models and
diagnostics are made on a thread of lower priority while a group trains, the first group's diagnostics on copies
of its untrained models, so that it trains at once. (With several lanes such a thread would get no core: the
lanes would wait for it. `initlab compare deep-relu` on 2 cores: 39.6 s, against 29.5 s made in the lanes.)
This thread prints the epochs the lanes report and makes the checks (Ctrl-C, the store) meanwhile; on Ctrl-C
each lane ends its runs KILLED after the epoch in progress.

>>> with LocalRunner(builder, device, stack=True) as runner:                           # doctest: +SKIP
...     curves, failures = runner.train(runner.groups(spec.runs()), queue, shared, False, bar, interrupts)
"""

from __future__ import annotations

import queue as queues
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for

from initlab.background import lower_thread_priority
from initlab.comparison.builder import ModelBuilder
from initlab.comparison.children import diagnose_copies, prepare, prepare_diagnosed
from initlab.comparison.group import train_group
from initlab.comparison.progress import Interrupts, Progress, RelayedProgress
from initlab.spec import Run
from initlab.tracking import TrackingQueue
from keras_initlab.training.planning import lanes_for, wave_size

REPORT_INTERVAL = 0.5
"""Seconds at most between two rounds of the checks (Ctrl-C, the store) while the lanes train."""


def groups(runs: list[Run], stack: bool, size: int) -> list[list[Run]]:
    """Runs trained together: up to ``size`` runs, any schemes and seeds, in one `train_stacked` call
    (the runs of one seed share their mini-batches), or one by one."""
    if not stack:
        return [[run] for run in runs]
    return [runs[i : i + size] for i in range(0, len(runs), size)]


class LocalRunner:
    """Trains groups of runs here (`groups`, `train`), in ``lanes`` threads; a context that ends with its threads."""

    needs_parent = False
    """Whether the parent run must exist before training starts (not here: the runs are handed over when they end)."""

    def __init__(self, builder: ModelBuilder, device: str, stack: bool):
        self.builder = builder
        self.stack, self.size = stack and builder.spec.stacks, wave_size(device)
        spec = builder.spec
        self.lanes = 1 if self.stack else lanes_for(builder.example, builder.data, spec.batch_size, device)
        self._preparer = ThreadPoolExecutor(1, thread_name_prefix="initlab-prepare", initializer=lower_thread_priority)
        self._lanes = ThreadPoolExecutor(self.lanes, thread_name_prefix="initlab-lane")

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc_info) -> None:
        self._lanes.shutdown(wait=True)
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
        """Trains ``groups`` in the lanes, in order (`train_group`), each run handed to ``queue`` when it ends; this
        thread reports their epochs on ``bar`` and makes its checks. Returns ``({run key: its summary curves} of the
        FINISHED runs, {run key: failure})`` (`initlab.tracking.ChildRun.summary_curves`). On any error (Ctrl-C
        included) the lanes stop after their epoch in progress (their runs end KILLED), the groups not yet started
        are dropped, and the error is raised."""
        builder, preparer, lanes = self.builder, self._preparer, self.lanes
        events: queues.SimpleQueue = queues.SimpleQueue()  # (group index, epoch, logs); epoch None: the group ended
        stopping = threading.Event()
        upcoming: Future | None = None  # one lane: the next group's models and diagnostics, being made

        def stop_check() -> None:
            if stopping.is_set():
                raise KeyboardInterrupt  # the lane's runs end KILLED with the epochs they finished (`train_group`)

        def lane(i: int) -> tuple[dict, dict]:
            nonlocal upcoming
            try:
                group, initial = groups[i], None
                if lanes > 1:  # made here, while the other lanes train
                    models, children, _ = prepare_diagnosed(builder, shared, group, histograms)
                elif upcoming is None:  # the first group trains at once; its step-0 diagnostics are made on copies
                    models, children, steps = prepare(builder, shared, group)
                    weights = [model.get_weights() for model in models]
                    initial = preparer.submit(diagnose_copies, builder, group, weights, steps, histograms)
                else:
                    models, children, _ = upcoming.result()
                if lanes == 1 and i + 1 < len(groups):  # the next group's models and diagnostics while this one trains
                    upcoming = preparer.submit(prepare_diagnosed, builder, shared, groups[i + 1], histograms)
                if stopping.is_set():  # before it trains: its runs never start
                    return {}, {}
                progress = RelayedProgress(events.put, i, len(group), bar.epochs, [queue.raise_if_lost, stop_check])
                failures = train_group(builder, group, models, children, progress, queue, initial)
                curves = {child.run_key: child.summary_curves() for child in children if child.status == "FINISHED"}
                return curves, failures
            finally:
                events.put((i, None, None))

        futures = [self._lanes.submit(lane, i) for i in range(len(groups))]
        curves, failures, running = {}, {}, len(groups)
        try:
            while running:
                try:
                    i, epoch, logs = events.get(timeout=REPORT_INTERVAL)
                except queues.Empty:
                    interrupts.check()
                    queue.check()
                    continue
                if epoch is not None:
                    bar.report(groups[i], epoch, logs)  # makes the checks
                    continue
                running -= 1
                trained, failed = futures[i].result()  # a lane's error is raised here
                curves.update(trained)
                failures.update(failed)
                bar.finish(groups[i])
                queue.check()
        except BaseException:
            stopping.set()
            for future in futures:
                future.cancel()
            preparer.shutdown(wait=False, cancel_futures=True)
            wait_for(futures)  # the lanes in flight end their runs
            raise
        return curves, failures
