"""A group of runs, trained together and handed to tracking (`train_group`); the same here and in a Ray unit.

>>> failures = train_group(builder, group, models, children, bar, queue)                 # doctest: +SKIP
"""

from __future__ import annotations

from concurrent.futures import Future

import keras

from initlab.comparison.builder import ModelBuilder
from initlab.comparison.children import EpochMetricsLogger, record_initial
from initlab.comparison.progress import Progress
from initlab.spec import Run
from initlab.tracking import ChildRun, TrackingQueue, TrackingUnavailableError
from keras_initlab.training import train, train_stacked


def train_group(
    builder: ModelBuilder,
    group: list[Run],
    models: list[keras.Model],
    children: list[ChildRun],
    bar: Progress,
    queue: TrackingQueue,
    initial: Future | None = None,
    lanes: int | None = None,
) -> dict[str, str]:
    """Trains one group of runs and hands each, ended, to ``queue``; returns ``{run_key: failure}``.

    A group is stacked runs, any schemes and seeds (`train_stacked`, the MLP with plain SGD) or one run
    (`train`, with the spec's optimizer and loss; its model is saved compiled with them, so the
    ``.keras`` file holds the optimizer's state). A run that fails is ended FAILED with the reason;
    an interrupt ends the group's runs KILLED, with the epochs that did complete. ``initial``: the
    step-0 diagnostics being made while the group trains (`initlab.comparison.children.diagnose_copies`),
    recorded before the runs are handed over (after an interrupt, only if they are done). ``lanes``:
    `train_stacked`'s (default: a lane per core).
    """
    spec, data = builder.spec, builder.data
    loggers = [EpochMetricsLogger(child) for child in children]
    callbacks = [[logger] for logger in loggers[:-1]] + [[loggers[-1], bar]]
    common = dict(epochs=spec.epochs, batch_size=spec.batch_size, device=spec.device, watch=builder.watch)
    bar.start(group)
    try:
        try:
            if spec.stacks:  # one model alone is trained by `train` inside train_stacked
                outcomes = train_stacked(
                    models,
                    data,
                    callbacks=callbacks,
                    learning_rate=spec.learning_rate,
                    seed=[run.seed for run in group],
                    lanes=lanes,
                    **common,
                )
            else:
                (model,) = models
                optimizer, loss = spec.build_optimizer(), builder.loss(model)
                train(model, data, optimizer=optimizer, loss=loss, callbacks=callbacks[0], seed=group[0].seed, **common)
                model.compile(optimizer=optimizer, loss=loss)
                outcomes = [None]
        except TrackingUnavailableError:  # the store failed: the comparison stops, this group is not kept
            raise
        except Exception as e:  # the group's runs are recorded as failed; the comparison goes on
            outcomes = [e] * len(children)
    except KeyboardInterrupt:  # keep the epochs that did complete
        if initial is not None and initial.done():
            record_initial(children, initial.result(), builder.watch is not None)
        for child in children:
            child.finish(None, "KILLED", "interrupted")
        queue.submit_runs(children)
        raise
    if initial is not None:
        record_initial(children, initial.result(), builder.watch is not None)
    failures = {}
    for child, model, outcome in zip(children, models, outcomes, strict=True):
        if isinstance(outcome, Exception):
            failures[child.run_key] = f"{type(outcome).__name__}: {outcome}"
            child.finish(None, "FAILED", failures[child.run_key])
        else:
            child.finish(model)
    queue.submit_runs(children)
    return failures
