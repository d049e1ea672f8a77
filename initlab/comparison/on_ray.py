"""`RayRunner`: a comparison's runs trained as Ray tasks, one per unit of work, on a cluster or a local instance.

A unit is one seed's stacked group (all schemes of that seed, `keras_initlab.training.train_stacked`) or,
where stacking does not apply, one run. Each asks for 1 CPU (and 1 GPU for ``device: gpu``) and trains
a lane per CPU it was given. The dataset goes to the object store once. The workers write their child
runs (`initlab.tracking.tracker.ComparisonTracker.join_parent`, then the same records as here); this
process keeps the parent run, the progress line (epochs reported on a Ray queue) and the summary.

>>> with RayRunner(parse_address("local"), builder, uri, "nielsen", stack=True) as runner:   # doctest: +SKIP
...     curves, failures = runner.train(runner.groups(spec.runs()), queue, shared, False, bar, interrupts)
"""

from __future__ import annotations

import signal
import threading

from initlab.cluster import RayAddress, check_store_reachable, connect, disconnect
from initlab.comparison.builder import ModelBuilder
from initlab.comparison.children import initial_diagnostics, prepare, record_initial
from initlab.comparison.group import train_group
from initlab.comparison.progress import Interrupts, Progress, RelayedProgress
from initlab.messages import one_line
from initlab.spec import ComparisonSpec, Run, SpecError
from initlab.tracking import Records, TrackingQueue

UNIT_RETRIES = 3
"""How many times Ray runs a unit of work again after its worker died (a unit that raises is not retried)."""

CANCEL_GRACE = 30.0
"""Seconds the units in flight get after Ctrl-C to write their runs KILLED (with the epochs they finished)."""


def units(runs: list[Run], stack: bool) -> list[list[Run]]:
    """A comparison's units of work on a cluster: with stacking, all schemes of one seed (one `train_stacked` group
    per task); otherwise one run per task."""
    if not stack:
        return [[run] for run in runs]
    seeds = list(dict.fromkeys(run.seed for run in runs))
    return [[run for run in runs if run.seed == seed] for seed in seeds]


class RayRunner:
    """Connects to the Ray cluster at ``address`` (`initlab.cluster.connect`), before any run exists, and checks
    that its workers can do the work: reach the store ``uri``, and have a GPU if the spec asks for one (a task
    asking for a GPU that no node has would wait forever); disconnects again when they cannot, and when the
    context ends.

    Raises:
        ClusterUnavailableError: no cluster answers there, or its workers cannot reach the store.
        SpecError: ``device: gpu`` and the cluster has no GPU.
    """

    needs_parent = True
    """Whether the parent run must exist before training starts (yes: the units write child runs of it)."""

    def __init__(self, address: RayAddress, builder: ModelBuilder, uri: str, experiment: str, stack: bool):
        self.builder, self.experiment = builder, experiment
        self.stack = stack and builder.spec.stacks
        cluster = connect(address)
        try:
            check_store_reachable(uri, cluster)
            if builder.spec.device == "gpu" and not cluster.resources.get("GPU"):
                raise SpecError(
                    f"device: 'gpu', but the Ray cluster at {address} has no GPU; use auto or cpu, or one with GPUs"
                )
        except Exception:
            disconnect()
            raise

    def __enter__(self) -> RayRunner:
        return self

    def __exit__(self, *exc_info) -> None:
        disconnect()

    def groups(self, runs: list[Run]) -> list[list[Run]]:
        """``runs`` in their units of work (`units`)."""
        return units(runs, self.stack)

    def train(
        self,
        groups: list[list[Run]],
        queue: TrackingQueue,
        shared: dict,
        histograms: bool,
        bar: Progress,
        interrupts: Interrupts,
    ) -> tuple[dict, dict]:
        """Runs the units ``groups`` as Ray tasks (`train_unit`), the dataset sent once to the object store; the
        progress line follows the epochs they report, and makes its checks (``interrupts``, the store) meanwhile.
        Returns ``({run key: its summary curves} of the FINISHED runs, {run key: failure})``. On Ctrl-C each unit
        in flight is interrupted (a `KeyboardInterrupt` in its task: it writes its runs KILLED with the epochs they
        finished, as `train_group` does here) and waited for up to `CANCEL_GRACE` seconds; on any other error, and
        after that, the tasks left are stopped."""
        import ray
        from ray.util.queue import Queue

        spec = self.builder.spec
        epochs = Queue(actor_options={"num_cpus": 0})  # Ray's own actor: takes no CPU, and imports nothing of ours
        data_ref = ray.put(self.builder.data)
        tracker = queue.wait()
        gpus = 1 if spec.device == "gpu" else 0
        task = ray.remote(train_unit).options(num_cpus=1, num_gpus=gpus, max_retries=UNIT_RETRIES)
        pending = {
            task.remote(
                spec,
                data_ref,
                [run.key for run in unit],
                tracker.uri,
                self.experiment,
                tracker.parent_id,
                shared,
                histograms,
                epochs,
                i,
            ): unit
            for i, unit in enumerate(groups)
        }
        curves, failures = {}, {}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5)
                waiting = epochs.qsize()
                for index, epoch, logs in epochs.get_nowait_batch(waiting) if waiting else []:
                    bar.report(groups[index], epoch, logs)
                for ref in ready:
                    unit = pending.pop(ref)
                    try:
                        results = ray.get(ref)
                    except Exception as e:  # the worker died more often than retried, or the unit could not start
                        results = {run.key: ("FAILED", f"{type(e).__name__}: {one_line(e)}", {}) for run in unit}
                    for key, (status, failure, curve) in results.items():
                        if status == "FINISHED":
                            curves[key] = curve
                        elif failure is not None:
                            failures[key] = failure
                    bar.finish(unit)
                for check in bar.checks:
                    check()
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)
            ended, _ = ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_GRACE)
            for ref in ended:  # ended: nothing to force-cancel below
                del pending[ref]
            raise
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
        return curves, failures


def train_unit(
    spec: ComparisonSpec,
    data,
    keys: list[str],
    uri: str,
    experiment: str,
    parent_id: str,
    shared: dict,
    histograms: bool,
    epochs,
    index: int,
) -> dict:
    """One unit of work on a Ray worker: builds its runs' models, diagnoses them, trains them and writes each as a
    child run of ``parent_id`` (child runs of these keys left by an earlier attempt are replaced). Epochs are
    put on ``epochs`` (a `ray.util.queue.Queue` the driver drains) as ``(index, epoch, logs)``. Returns
    ``{run key: (status, failure or None, summary curves)}`` (`initlab.tracking.ChildRun.summary_curves`)."""
    import ray

    # Ray stops a unit on Ctrl-C with `_thread.interrupt_main`, which does nothing where SIGINT is ignored: a worker
    # of a cluster started from a shell's background job (`ray start ... &`, nohup) inherits that.
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    builder = ModelBuilder(spec, data)
    runs = {run.key: run for run in spec.runs()}
    group = [runs[key] for key in keys]
    queue = TrackingQueue(uri, experiment, spec.hash, Records(uri, experiment, spec.hash, parent_id))
    try:
        queue.submit(lambda tracker: tracker.join_parent(parent_id, keys))
        models, children, steps = prepare(builder, shared, group)
        record_initial(
            children, initial_diagnostics(builder, group, models, steps, histograms), builder.watch is not None
        )
        # Sent without waiting for it: a task waiting on Ray (`Queue.put_nowait` does) lends its CPU back to the
        # scheduler, which would start another unit, and a worker importing TensorFlow, on it meanwhile.
        bar = RelayedProgress(epochs.actor.put_nowait.remote, index, len(group), spec.epochs, [queue.raise_if_lost])
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)  # a lane per CPU it was given
        failures = train_group(builder, group, models, children, bar, queue, lanes=max(1, int(cpus)))
        queue.wait()
    finally:
        queue.close()
    return {child.run_key: (child.status, failures.get(child.run_key), child.summary_curves()) for child in children}
