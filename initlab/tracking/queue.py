"""`TrackingQueue`: a comparison's MLflow requests, made in order on a thread of their own.

Training never waits for MLflow: the queue opens the store (seconds for a new SQLite store:
MLflow's schema migrations) while the first models train, and every later request waits its turn
behind training. Under the ``initlab`` command the requests go one step further, to the tracking
process (`initlab.tracking.process`), so that MLflow's Python never competes with training for the GIL.

>>> records = Records("sqlite:///tracking/mlflow.db", "nielsen", spec_hash="ab12")                # doctest: +SKIP
>>> queue = TrackingQueue("sqlite:///tracking/mlflow.db", "nielsen", "ab12", records)              # doctest: +SKIP
>>> queue.submit(lambda tracker: tracker.start_parent({}, resume=False)).result()                   # doctest: +SKIP
>>> queue.submit_runs(children); queue.wait()                                                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from initlab.background import lower_thread_priority
from initlab.tracking.process import RemoteTracker, take_tracking_process
from initlab.tracking.records import ChildRun, Records
from initlab.tracking.store import TrackingLostError, TrackingUnavailableError, is_tracking_error
from initlab.tracking.tracker import ComparisonTracker


class TrackingQueue:
    """A comparison's MLflow requests, made in order on a thread of their own: training never waits for MLflow.

    The first job opens the store (`ComparisonTracker`: importing MLflow and, for a new
    SQLite store, MLflow's schema migrations, seconds) while the first models are built
    and train; in the tracking process that the ``initlab`` command started, if there is one
    (`RemoteTracker`: the same requests, answered there). `submit` queues ``job(tracker)``;
    `submit_runs` makes ended child runs records on disk at once, in the caller's thread
    (``records``: `initlab.tracking.records.Records.stage`), and queues each to become a child run
    in MLflow (`ComparisonTracker.write_record`). After the store fails, or a record cannot be
    written, no request goes to MLflow any more (records still go to disk): `raise_if_lost` raises
    that error in the caller's thread without waiting (a comparison asks after every epoch), `wait`
    waits for every job and raises it; its message says truthfully where the finished runs are
    (`Records.kept_message`). An error that is not the store's (a model that cannot be saved) is
    raised by `check` (between groups of runs) and `wait`; the queue goes on.

    """

    def __init__(self, uri: str, experiment: str, spec_hash: str, records: Records):
        self.uri, self.records = uri, records
        self.tracker: ComparisonTracker | None = None
        self.lost: TrackingUnavailableError | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="initlab-mlflow", initializer=lower_thread_priority)
        self._jobs: list[Future] = [self._pool.submit(self._open, experiment, spec_hash)]

    def _open(self, experiment: str, spec_hash: str) -> None:
        process = take_tracking_process()
        try:
            if process is None:
                self.tracker = ComparisonTracker(self.uri, experiment, spec_hash)
            else:
                self.tracker = RemoteTracker(*process, self.uri, experiment, spec_hash)
        except TrackingUnavailableError as e:
            self.lost = e

    def _guarded(self, request: Callable[[], object]) -> object:
        """``request()``; a store error is kept as `lost` (and ``None`` returned), any other raised."""
        try:
            return request()
        except Exception as e:
            if not (isinstance(e, TrackingUnavailableError) or is_tracking_error(e)):
                raise
            if self.lost is None:
                self.lost = e if isinstance(e, TrackingUnavailableError) else self.tracker.lost(e)
            return None

    def submit(self, job: Callable[[ComparisonTracker], object]) -> Future:
        """Queues ``job(tracker)``; skipped (the future's result ``None``) once the store failed."""

        def run():
            if self.lost is None:
                return self._guarded(lambda: job(self.tracker))
            return None

        return self._queue(run)

    def submit_runs(self, children: Sequence[ChildRun]) -> None:
        """Ended child runs: each a record on disk now, then (queued, while the store works) a child run. A record
        that cannot be written stops the comparison like a failed store."""
        stages = [self.records.stage(child) for child in children]
        if None in stages and self.lost is None:
            self.lost = TrackingLostError(f"cannot write the records of finished runs to {self.records.root}.")

        def run():
            for stage in stages:
                if stage is not None and self.lost is None:
                    self._guarded(lambda s=stage: self.tracker.write_record(s))

        self._queue(run)

    def _queue(self, job: Callable[[], object]) -> Future:
        future = self._pool.submit(job)
        self._jobs.append(future)
        return future

    def failure(self) -> TrackingUnavailableError | None:
        """The store's error if it failed by now; a `TrackingLostError` says where the finished runs are."""
        if isinstance(self.lost, TrackingLostError):
            return TrackingLostError(f"{self.lost} {self.records.kept_message()}")
        return self.lost

    def raise_if_lost(self) -> None:
        """Raises `failure`, if any."""
        if self.lost is not None:
            raise self.failure()

    def check(self) -> None:
        """Raises the store's error, or a job's, if one happened by now; never waits."""
        self.raise_if_lost()
        for future in [f for f in self._jobs if f.done()]:
            self._jobs.remove(future)
            future.result()

    def wait(self) -> ComparisonTracker:
        """Waits for every job queued so far; raises as `check`. Returns the open tracker."""
        while self._jobs:
            self._jobs.pop(0).result()
        self.check()
        return self.tracker

    def close(self) -> None:
        """Waits for the jobs queued so far and accepts no more (after the store failed, what remains is
        records going to disk); a tracking process is then told to end."""
        self._pool.shutdown(wait=True)
        if isinstance(self.tracker, RemoteTracker):
            self.tracker.close()
