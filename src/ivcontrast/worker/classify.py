"""Classify jobs: an eligible series in the store -> a contrast call in the results table.

The classifier is loaded once per worker process (``load_classifier``, checksums verified).
A worker without a usable model package logs why and does not take classify jobs; they wait
in the queue for a worker that has one.

The classification itself is ``classifier.pipeline`` (the same as ``ivcontrast classify``);
this module adds the store around it. A job runs in two steps so that reading and inference
overlap:

- ``ClassifySeries.prepare``: the series' instance paths from the store (its current
  version), then ``pipeline.prepare_dicom``. CPU and disk; safe in any thread.
- ``ClassifySeries.complete``: ``pipeline.classify``, then a ``JobResult`` whose effects add
  the ``Result`` row (``result_fields``), mark the series classified and queue write-back,
  committed with the job's release (so a crash classifies nothing twice).

``Prefetcher`` prepares the next leased jobs in a small thread pool (the backend's prefetch
plan) while the worker's own thread runs ``complete`` for the current one, in claim order.
ONNX Runtime releases the GIL while it computes, so a preparing thread (header parsing is
Python) runs beside it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivcontrast.classifier.engine import Classifier
from ivcontrast.classifier.errors import ClassifierError
from ivcontrast.classifier.pipeline import PreparedSeries, SeriesCall, classify, prepare_dicom
from ivcontrast.config import Settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import Instance, Result, Series, SeriesState
from ivcontrast.store.queue import JobQueue, JobResult, LeasedJob, LeaseLost, PermanentJobError
from ivcontrast.worker.jobs import current_series
from ivcontrast.writeback import enqueue_writeback

log = logging.getLogger(__name__)

# Column widths of the results table (store.models.Result).
_DEVICE_CHARS = 32
_AGENT_CHARS = 64
_STRUCTURE_CHARS = 64


def load_classifier(settings: Settings) -> Classifier | None:
    """The configured model package on the configured device, or None (logged) if unusable."""
    try:
        return Classifier.from_settings(settings.classifier)
    except ClassifierError as exc:
        log.warning(
            "no classifier in this worker, so it takes no classify jobs (they wait for a "
            "worker that has one): %s",
            exc,
        )
        return None


def result_fields(call: SeriesCall) -> dict[str, Any]:
    """A call as the columns of a ``Result`` row (without series and version)."""
    return {
        "model_name": call.model_name,
        "model_version": call.model_version,
        "model_sha256": call.model_sha256,
        "probability": call.probability,
        "label": call.label,
        "network_label": call.network_label,
        "review_reasons": call.review_reasons,
        "physics_label": call.physics_label,
        "physics_hu": call.physics_hu,
        "physics_structure": None
        if call.physics_structure is None
        else call.physics_structure[:_STRUCTURE_CHARS],
        "physics": call.physics,
        "threshold": call.threshold,
        "aggregation": call.aggregation,
        "slices_used": call.slices_used,
        "slice_probabilities": call.slice_probabilities,
        "original_contrast_agent": None if call.tag is None else call.tag[:_AGENT_CHARS],
        "tag_status": call.tag_status,
        "device": call.runtime[:_DEVICE_CHARS],
        "load_seconds": call.load_seconds,
        "preprocess_seconds": call.preprocess_seconds,
        "inference_seconds": call.inference_seconds,
        "physics_seconds": call.physics_seconds,
        "total_seconds": call.total_seconds,
    }


class ClassifySeries:
    """The ``classify`` job handler: one series version -> one ``Result`` row."""

    def __init__(self, settings: Settings, db: Database, classifier: Classifier) -> None:
        self.db = db
        self.spool = settings.spool_path
        self.writeback = settings.writeback
        self.classifier = classifier

    def __call__(self, job: LeasedJob) -> JobResult:
        return self.complete(job, self.prepare(job))

    def prefetcher(self, queue: JobQueue) -> Prefetcher:
        plan = self.classifier.backend.prefetch
        return Prefetcher(self, queue, plan.threads, plan.depth)

    @staticmethod
    def _current(session: Session, job: LeasedJob) -> tuple[str, int]:
        """The job's series UID and its current version."""
        row = session.execute(
            select(Series.series_uid, Series.version).where(Series.id == job.series_id)
        ).first()
        if row is None:
            raise PermanentJobError(f"series {job.series_id} no longer exists")
        return str(row[0]), int(row[1])

    def _version(self, job: LeasedJob) -> tuple[str, int]:
        with self.db.session() as session:
            return self._current(session, job)

    def prepare(self, job: LeasedJob) -> PreparedSeries:
        """Read, decode and preprocess the series' current instances (any thread)."""
        t0 = time.perf_counter()
        with self.db.session() as session:
            # One read transaction: the version and its instances are one snapshot.
            series_uid, version = self._current(session, job)
            if version != job.series_version:
                return PreparedSeries(None, series_uid=series_uid)
            paths = [
                self.spool / relative
                for relative in session.scalars(
                    select(Instance.path)
                    .where(Instance.series_id == job.series_id)
                    .order_by(Instance.id)
                )
            ]
        try:
            return prepare_dicom(self.classifier, paths, series_uid=series_uid, started=t0)
        except ClassifierError as exc:
            # A late instance may have replaced files under our feet; then the error is moot.
            if self._version(job)[1] != job.series_version:
                return PreparedSeries(None, series_uid=series_uid)
            raise PermanentJobError(str(exc)) from exc

    def complete(self, job: LeasedJob, prepared: PreparedSeries) -> JobResult:
        """Infer, and return the store changes that record the call (the worker's thread)."""
        if prepared.model_input is None or self._version(job)[1] != job.series_version:
            log.info(
                "series %s version %d was re-opened before it was classified; nothing recorded",
                prepared.series_uid,
                job.series_version,
                extra={"series_uid": prepared.series_uid},
            )
            return JobResult("stale")
        try:
            call = classify(self.classifier, prepared)
        except ClassifierError as exc:
            raise PermanentJobError(f"series {prepared.series_uid}: {exc}") from exc
        fields = result_fields(call)
        log.info(
            "series %s version %d: %s (p=%.3f, %d slices, tag %s) in %.2f s",
            prepared.series_uid,
            job.series_version,
            call.label,
            call.probability,
            call.slices_used,
            call.tag_status,
            call.total_seconds,
            extra={"series_uid": prepared.series_uid},
        )

        def record(session: Session) -> None:
            # Checked again under the lock: a late instance may re-open the series between
            # the check above and this commit; then its new version gets its own job.
            series = current_series(session, job)
            if series is None:
                return
            result = Result(series_id=series.id, series_version=job.series_version, **fields)
            session.add(result)
            series.state = SeriesState.CLASSIFIED
            series.error = None
            enqueue_writeback(session, self.writeback, result)

        return JobResult("classified", record)


@dataclass(eq=False)
class _InFlight:
    job: LeasedJob
    future: Future[PreparedSeries]
    ready: threading.Event  # set when ``future`` is done


class Prefetcher:
    """Prepares up to ``depth`` leased classify jobs ahead; hands them out in claim order.

    The worker claims jobs while ``room`` > 0, ``submit``s them, and runs ``next`` for the
    oldest one. The queue's ``LeaseKeeper`` keeps the leases of the jobs in flight: ``renew``
    runs it between jobs, and ``next`` runs it every third of a lease while the oldest one's
    preparation is awaited (on the queue's clock), so a slow series keeps its lease and the
    ones behind it keep theirs. A job whose lease is lost is dropped.
    """

    def __init__(self, handler: ClassifySeries, queue: JobQueue, threads: int, depth: int) -> None:
        self.handler = handler
        self.queue = queue
        self.keeper = queue.keeper
        self.threads = max(1, threads)
        self.depth = max(1, depth)
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: deque[_InFlight] = deque()
        log.info("classify pipeline: %d preparing thread(s), %d series in flight", threads, depth)

    def __len__(self) -> int:
        return len(self._inflight)

    @property
    def room(self) -> int:
        return self.depth - len(self._inflight)

    @property
    def preparing(self) -> bool:
        """True while the oldest job in flight is still being prepared."""
        return bool(self._inflight) and not self._inflight[0].future.done()

    def submit(self, job: LeasedJob) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="classify-prepare")
        self.keeper.track(job.id)
        future = self._pool.submit(self.handler.prepare, job)
        ready = threading.Event()
        future.add_done_callback(lambda _: ready.set())
        self._inflight.append(_InFlight(job, future, ready))

    def next(self) -> tuple[LeasedJob, Callable[[], JobResult]] | None:
        """The oldest job and a call that waits for its preparation and completes it."""
        if not self._inflight:
            return None
        item = self._inflight[0]

        def compute() -> JobResult:
            try:
                while not self.queue.clock.wait(item.ready, self.keeper.until_due()):
                    self.renew()
                    if item not in self._inflight:
                        raise LeaseLost(f"job {item.job.id}: lease lost while prepared")
                prepared = item.future.result()
            finally:
                self._drop(item)
            return self.handler.complete(item.job, prepared)

        return item.job, compute

    def renew(self) -> None:
        """Extend the leases that are due; drop the jobs whose lease is gone."""
        self.keeper.renew()
        for item in list(self._inflight):
            if self.keeper.lost(item.job.id):
                log.warning("job %d (classify): lease lost while waiting; dropped", item.job.id)
                item.future.cancel()
                self._drop(item)

    def _drop(self, item: _InFlight) -> None:
        if item in self._inflight:
            self._inflight.remove(item)
        self.keeper.forget(item.job.id)

    def close(self) -> None:
        """Stop the threads (after the worker has completed or dropped every job in flight)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
