"""`run_comparison`: a comparison spec's runs trained and tracked: inputs resolved once, one runner picked,
the parent run started, kept and finished with the summary.

>>> outcome = run_comparison("nielsen")  # a built-in spec (initlab list), or a spec file's path  # doctest: +SKIP
>>> outcome.summary[0].final                                                                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from initlab.background import quick_gil_handoff
from initlab.cluster import RayAddress, parse_address
from initlab.comparison.children import data_params, model_params, shared_params
from initlab.comparison.local import LocalRunner
from initlab.comparison.on_ray import RayRunner
from initlab.comparison.preflight import check_spec_fits, load_spec_data, resolve_spec_device
from initlab.comparison.progress import Interrupts, Progress
from initlab.comparison.summary import finish_parent, summarize_comparison
from initlab.messages import one_line, shown
from initlab.spec import ComparisonSpec, SpecError
from initlab.spec_files import read_spec_file, spec_path
from initlab.tracking import (
    ComparisonTracker,
    Records,
    TrackingQueue,
    TrackingUnavailableError,
    check_experiment,
    check_reachable,
    check_writable,
    http_limits,
    resolve_tracking_uri,
)
from keras_initlab.backend import require_tensorflow
from keras_initlab.data import Dataset


@dataclasses.dataclass(frozen=True)
class ComparisonOutcome:
    """What `run_comparison` did: where it logged, the summary, and which runs failed."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    summary: list
    failures: dict[str, str]
    skipped: list[str]


def run_comparison(
    spec: ComparisonSpec | Mapping | str | os.PathLike,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    resume: bool = False,
    stack: bool = True,
    progress=None,
    spec_file: str | os.PathLike | None = None,
    histograms: bool = False,
    ray: str | RayAddress | None = None,
    data: Dataset | None = None,
) -> ComparisonOutcome:
    """Trains every (scheme, seed) run of ``spec`` and tracks it in MLflow (see `initlab.tracking`).

    ``spec`` is a `ComparisonSpec`, a built-in spec's name (``"nielsen"``; `initlab.spec_files.spec_path`), a
    spec file's path, or a spec as a mapping (in Python, ``model: {factory: build}`` may hold the factory
    function itself). ``data`` (a `keras_initlab.Dataset`, e.g. ``Dataset.from_arrays(...)``) trains on your
    data instead of the spec's ``dataset`` key, which the spec then leaves out; every child run records the
    data's name, shapes and content hash (``dataset``, ``dataset_shapes``, ``dataset_hash``), and ``resume``
    with other data is refused naming the difference.

    It resolves its inputs once (the spec, the store, the device, the data, the model builder: every check
    before any run exists), then picks one runner: this machine's (`initlab.comparison.local.LocalRunner`)
    or Ray's (`initlab.comparison.on_ray.RayRunner`). For the MLP with plain SGD (`ComparisonSpec.stacks`)
    and ``stack``, runs train side by side in compiled groups, each run on its seed's mini-batches (the
    same for every scheme of a seed: a paired comparison); every other run (conv nets, factory models,
    any ``optimizer``) trains alone with `keras_initlab.training.train`. Either way each (scheme, seed)
    gets its own child run with the same params and metrics.

    Before training, each run logs the step-0 diagnostics of its model
    (`keras_initlab.diagnostics.diagnose`) and, with ``histograms``, the activation
    histograms as ``init/activations.png`` (about 0.2 s of drawing per run: off unless asked).
    The work around training runs beside it: the next group's models and diagnostics
    (the first group's diagnostics on copies of its untrained models, while it trains)
    on one thread, every MLflow request on another (`initlab.tracking.TrackingQueue`; under the
    ``initlab`` command, answered by its tracking process),
    both at a lower priority than training, which gets the GIL back quickly
    (`initlab.background.quick_gil_handoff`).

    With ``ray`` (``"local"``, ``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"``, or an `initlab.cluster.RayAddress`;
    see `initlab.cluster`), the runs train as Ray tasks instead: one per seed's stacked group (or per run where stacking
    does not apply), each on one CPU (and one GPU for ``device: gpu``); the workers write their child runs, this process
    the parent run, the progress line and the summary. Needs ``pip install 'keras-initlab[ray]'``.

    A run that fails (an exception, a non-finite loss) is marked FAILED with the
    reason and the others go on; ``resume`` re-opens the latest parent run of the
    same spec and trains only the runs not FINISHED there. An interrupt
    (Ctrl-C) marks the runs in flight and the parent KILLED and re-raises.

    Example:

    >>> outcome = run_comparison("nielsen")  # doctest: +SKIP
    >>> def build(scheme, input_shape, num_classes): ...         # a notebook's own model  # doctest: +SKIP
    >>> outcome = run_comparison({"name": "mine", "model": {"factory": build}, "schemes": ["he", "glorot"],
    ...                           "optimizer": "adam", "epochs": 5, "batch_size": 64})     # doctest: +SKIP
    >>> digits = Dataset.from_arrays(x_train, y_train, x_val, y_val, name="digits")     # doctest: +SKIP
    >>> outcome = run_comparison({"name": "digits", "model": {"sizes": [64, 32, 10]}, "schemes": ["he"]},
    ...                          data=digits)                                             # doctest: +SKIP

    Raises:
        BackendError: under a Keras backend other than TensorFlow, before anything is tracked.
        SpecError: for anything the spec, the data and the memory plan show to be wrong
            (`check_spec_fits`), or a resume with other data, before anything is tracked.
        ValueError, TypeError: ``data`` that is not a `Dataset`, or given beside the spec's ``dataset``.
        TrackingUnavailableError: when the store cannot be opened or a server does not answer,
            before any run exists; `TrackingLostError` when it stops working during the comparison
            (finished runs are kept as pending records, written by ``resume``).
        ClusterUnavailableError: with ``ray``: Ray is not installed, no cluster answers at the address, or its
            workers could not reach the store; before any run exists.
    """
    require_tensorflow("initlab compare")
    address = parse_address(ray) if isinstance(ray, str) else ray  # a malformed address before any work
    spec, spec_file = _resolve_spec(spec, spec_file, data)
    experiment = check_experiment(experiment or spec.name)
    uri = resolve_tracking_uri(tracking_uri)
    check_reachable(uri)
    check_writable(uri)
    device = resolve_spec_device(spec)
    builder = check_spec_fits(spec, load_spec_data(spec, data), device)
    records = Records(uri, experiment, spec.hash)
    with records.running(resume, f"the comparison of {spec.name} in experiment {experiment!r} of {uri}"):
        runner = (
            LocalRunner(builder, device, stack)
            if address is None
            else RayRunner(address, builder, uri, experiment, stack)
        )
        # MLflow on one thread, the next group's models and diagnostics on another, training on this one.
        with runner, http_limits(), quick_gil_handoff(), Interrupts() as interrupts:
            queue = TrackingQueue(uri, experiment, spec.hash, records)
            try:
                depth = builder.depth if spec.watch else None
                started = queue.submit(
                    lambda tracker: _start(tracker, spec, builder.data, resume, spec_file, records, progress, depth)
                )
                if resume or runner.needs_parent or not uri.startswith("sqlite:///"):
                    # what to train depends on the store (units elsewhere need the parent); a server's errors first
                    queue.wait()
                finished = started.result() if resume else {}
                curves = {}  # run key -> {metric: values by step} of its summary curves, of every FINISHED run
                if finished:
                    curves = queue.submit(lambda tracker: tracker.summary_curves(finished)).result()
                groups = runner.groups([run for run in spec.runs() if run.key not in finished])
                bar = Progress(progress, sum(map(len, groups)), spec.epochs, [interrupts.check, queue.raise_if_lost])
                trained, failures = runner.train(
                    groups, queue, shared_params(spec, builder.data, device), histograms, bar, interrupts
                )
                curves.update(trained)
                bar.close()
                # while the last runs are written
                summary, files, description = summarize_comparison(spec, builder.data.name, curves)
                status = "FAILED" if failures else "FINISHED"
                queue.submit(lambda tracker: finish_parent(tracker, files, description, status))
                tracker = queue.wait()
            except BaseException as error:  # Ctrl-C, SIGTERM, MLflow failing, a bug
                if isinstance(error, TrackingUnavailableError) or queue.lost is not None:
                    # No more requests to a store that failed (each could wait for the HTTP limits):
                    # what is left RUNNING, --resume repairs.
                    raise queue.failure() or error from None
                interrupted = isinstance(error, KeyboardInterrupt)
                with contextlib.suppress(BaseException):  # nothing left RUNNING that can be marked
                    reason = "interrupted" if interrupted else f"aborted: {type(error).__name__}: {one_line(error)}"
                    status = "KILLED" if interrupted else "FAILED"
                    queue.submit(lambda tracker: tracker.kill_running_children(reason, status))
                    queue.submit(lambda tracker: tracker.finish_parent(status))
                    queue.wait()
                raise
            finally:
                queue.close()
    assert tracker.parent_id is not None  # the comparison ran: its parent run exists
    return ComparisonOutcome(uri, tracker.experiment_id, tracker.parent_id, summary, failures, sorted(finished))


DATA_KEYS = ("dataset", "data_dir")
"""The spec's keys that name its data: left out when ``run_comparison`` is given ``data``."""

RESUMED_DATA_PARAMS = ("dataset_shapes", "dataset_hash")
"""The parent's params (`data_params`) that a ``resume`` must find equal: the data, not only their name."""


def _resolve_spec(
    spec: ComparisonSpec | Mapping | str | os.PathLike, spec_file: str | os.PathLike | None, data: Dataset | None
) -> tuple[ComparisonSpec, str | os.PathLike | None]:
    """``(spec, the file it was read from)``: a built-in spec's name or a file is read, a mapping validated. With
    ``data`` (which the spec then leaves out), the spec's ``dataset`` is the data's name."""
    given: Mapping
    if isinstance(spec, (str, os.PathLike)):
        path = spec_path(spec)  # a built-in spec's name, or a file
        resolved, spec_file = ComparisonSpec.from_file(path), path if spec_file is None else spec_file
        raw = read_spec_file(path) if data is not None else {}  # the keys as written (a file read twice: rare)
        given = raw if isinstance(raw, Mapping) else {}  # a mapping: `from_file` has validated it
    elif not isinstance(spec, ComparisonSpec):
        resolved, given = ComparisonSpec.from_dict(spec), spec
    else:  # the keys it holds are those that differ from the defaults
        resolved = spec
        given = {key: None for key in DATA_KEYS if getattr(spec, key) != getattr(ComparisonSpec, key)}
    if data is None:
        return resolved, spec_file
    if not isinstance(data, Dataset):
        raise TypeError(
            f"data must be a keras_initlab.Dataset (Dataset.from_arrays, Dataset.from_npz, load_dataset); "
            f"got {shown(data)}"
        )
    for key in DATA_KEYS:
        if key in given:
            raise ValueError(
                f"give the data once: the spec's {key} key or data=, not both (leave {key} out of the spec)"
            )
    return dataclasses.replace(resolved, dataset=data.name), spec_file


def _start(
    tracker: ComparisonTracker,
    spec: ComparisonSpec,
    data: Dataset,
    resume: bool,
    spec_file,
    records: Records,
    progress,
    depth: int | None,
) -> dict[str, str]:
    """Starts (or with ``resume`` re-opens) the parent run, named ``<spec> YYYY-MM-DD HH:MM``, and logs the
    spec and saves the chart view (with the "Layers" section for watched models of ``depth`` layers); with
    ``resume``, writes the records of runs that ended without reaching MLflow last time (the store
    failed, or the process died). Returns ``{run_key: run_id}`` of the finished runs.

    A resume that finds no parent of the spec in the store (a store moved or deleted) starts one, says so on
    ``progress``, and writes every record of the comparison waiting on this machine into it. A resume with other
    data than the parent's (`data_params`) is a `SpecError` naming the difference, before the parent is touched."""
    shared = {k: v for k, v in spec.to_json().items() if k not in ("name", "model")}
    shared.update(model_params(spec))
    shared = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in shared.items()}
    data_now = data_params(data)
    shared.update({key: data_now[key] for key in RESUMED_DATA_PARAMS})
    previous = tracker.latest_parent() if resume else None
    if previous is not None:
        _check_same_data(tracker.run_params(previous), data_now)
    vanished = resume and previous is None
    finished = tracker.start_parent(
        params=shared, resume=resume, run_name=f"{spec.name} {datetime.now():%Y-%m-%d %H:%M}"
    )
    parent_id = tracker.parent_id
    assert parent_id is not None  # start_parent made the parent run or re-opened it
    records.set_parent(parent_id)
    if resume:
        waiting = records.waiting(parent_id, every=vanished)
        if vanished and progress is not None:
            progress.write(
                f"--resume: no comparison of {spec.name} in {tracker.uri} to re-open; starting one, with "
                f"the {len(waiting)} run record(s) left on this machine in {records.root}\n"
            )
        finished.update(tracker.log_records(waiting, finished))
    tracker.save_view(runs=len(spec.runs()), depth=depth)
    files: dict[str, str | bytes] = {"spec.json": json.dumps(spec.to_json(), indent=2) + "\n"}
    if spec_file is not None:  # the file as written, beside what ran (overrides applied)
        files[f"original-{Path(spec_file).name}"] = Path(spec_file).read_bytes()
    tracker.log_parent_artifacts(files)
    return finished


def _check_same_data(parent: Mapping[str, str], data_now: Mapping[str, str]) -> None:
    """A `SpecError` unless the data of a resumed comparison's parent run (its params; older parents lack them) are
    the data now."""
    for key in RESUMED_DATA_PARAMS:
        if key in parent and parent[key] != data_now[key]:
            raise SpecError(
                f"--resume: the data differ from those the comparison trained on ({key}: {parent[key]} there, "
                f"{data_now[key]} now); resume with the same data, or leave out --resume to start a new comparison"
            )
