"""Classify jobs: an eligible series in the store -> a contrast call in the results table.

The classifier is loaded once per worker process (``load_classifier``, checksums verified).
A worker without a usable model package logs why and does not take classify jobs; they wait
in the queue for a worker that has one.

A job runs in two steps so that reading and inference overlap:

- ``ClassifySeries.prepare``: the series' instance paths from the store (its current
  version), headers, decoding, preprocessing. CPU and disk; safe in any thread.
- ``ClassifySeries.complete``: the network, then a ``JobResult`` whose effects add the
  ``Result`` row, mark the series classified and queue write-back, committed with the
  job's release (so a crash classifies nothing twice).

``Prefetcher`` prepares the next leased jobs in a small thread pool while the worker's own
thread runs ``complete`` for the current one, in claim order; ``prepare_ahead`` does the same
for ``ivcontrast classify``. ONNX Runtime releases the GIL while it computes, so a preparing
thread (header parsing is Python) runs beside it.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivcontrast.classifier.dicom_series import DicomSeries
from ivcontrast.classifier.engine import Classifier, SeriesPrediction
from ivcontrast.classifier.errors import ClassifierError
from ivcontrast.classifier.preprocess import ModelInput
from ivcontrast.classifier.tags import tag_status
from ivcontrast.config import Settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import Instance, Result, Series, SeriesState
from ivcontrast.store.queue import JobQueue, JobResult, LeasedJob, LeaseLost, PermanentJobError
from ivcontrast.vocabulary import Label
from ivcontrast.worker.jobs import current_series
from ivcontrast.writeback import enqueue_writeback

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Column widths of the results table (store.models.Result).
_DEVICE_CHARS = 32
_AGENT_CHARS = 64


def label_of(contrast: bool) -> Label:
    """The label the store, the API and the CLI use: 'contrast' or 'no_contrast'."""
    return Label.of(contrast)


def device_of(backend_name: str) -> str:
    """'onnxruntime-cpu (2 threads)' -> 'onnxruntime-cpu'; 'torch-cuda (H100, bf16)' -> 'torch-cuda'."""
    return backend_name.split(" (", 1)[0][:_DEVICE_CHARS]


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


def prefetch_plan(backend_name: str, cpus: int | None = None) -> tuple[int, int]:
    """(preparing threads, jobs in flight) for a backend.

    On the CPU the network already uses every core: one preparing thread and one series
    ahead keep the cores busy without oversubscribing them. On a GPU the CPU only prepares,
    so most cores do, with a couple of series more in flight than threads.
    """
    if device_of(backend_name) == "torch-cuda":
        threads = max(2, min(8, (cpus or os.cpu_count() or 2) - 1))
        return threads, threads + 2
    return 1, 2


def result_fields(prediction: SeriesPrediction, contrast_agent: str | None) -> dict[str, Any]:
    """A prediction as the columns of a ``Result`` row (without series and version)."""
    agent = None if contrast_agent is None else contrast_agent[:_AGENT_CHARS]
    timings = prediction.timings
    return {
        "model_name": prediction.model_name,
        "model_version": prediction.model_version,
        "model_sha256": prediction.model_sha256,
        "probability": float(prediction.probability),
        "label": label_of(prediction.contrast),
        "threshold": float(prediction.threshold),
        "aggregation": prediction.aggregation,
        "slices_used": prediction.slices_used,
        "slice_probabilities": [
            [round(float(z), 3), float(p)]
            for z, p in zip(prediction.slice_z_mm, prediction.slice_probabilities, strict=True)
        ],
        "original_contrast_agent": agent,
        "tag_status": tag_status(agent, prediction.contrast),
        "device": device_of(prediction.backend),
        "load_seconds": timings.load_s,
        "preprocess_seconds": timings.preprocess_s,
        "inference_seconds": timings.inference_s,
        "total_seconds": timings.total_s,
    }


@dataclass(frozen=True, eq=False)
class PreparedSeries:
    """A classify job after ``prepare``: the model input, or None when the series moved on."""

    series_uid: str
    model_input: ModelInput | None
    contrast_agent: str | None = None


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
        threads, depth = prefetch_plan(self.classifier.backend.name)
        return Prefetcher(self, queue, threads, depth)

    def _version(self, job: LeasedJob) -> tuple[str, int]:
        with self.db.session() as session:
            row = session.execute(
                select(Series.series_uid, Series.version).where(Series.id == job.series_id)
            ).first()
        if row is None:
            raise PermanentJobError(f"series {job.series_id} no longer exists")
        return str(row[0]), int(row[1])

    def prepare(self, job: LeasedJob) -> PreparedSeries:
        """Read, decode and preprocess the series' current instances (any thread)."""
        t0 = time.perf_counter()
        with self.db.session() as session:
            # One read transaction: the version and its instances are one snapshot.
            row = session.execute(
                select(Series.series_uid, Series.version).where(Series.id == job.series_id)
            ).first()
            if row is None:
                raise PermanentJobError(f"series {job.series_id} no longer exists")
            series_uid, version = str(row[0]), int(row[1])
            if version != job.series_version:
                return PreparedSeries(series_uid, None)
            paths = [
                self.spool / relative
                for relative in session.scalars(
                    select(Instance.path)
                    .where(Instance.series_id == job.series_id)
                    .order_by(Instance.id)
                )
            ]
        try:
            series = DicomSeries.open(paths)
            model_input = self.classifier.prepare(series, time.perf_counter() - t0)
        except ClassifierError as exc:
            # A late instance may have replaced files under our feet; then the error is moot.
            if self._version(job)[1] != job.series_version:
                return PreparedSeries(series_uid, None)
            raise PermanentJobError(str(exc)) from exc
        return PreparedSeries(series_uid, model_input, series.attributes.get("ContrastBolusAgent"))

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
            prediction = self.classifier.infer(prepared.model_input)
        except ClassifierError as exc:
            raise PermanentJobError(f"series {prepared.series_uid}: {exc}") from exc
        fields = result_fields(prediction, prepared.contrast_agent)
        log.info(
            "series %s version %d: %s (p=%.3f, %d slices, tag %s) in %.2f s",
            prepared.series_uid,
            job.series_version,
            fields["label"],
            prediction.probability,
            prediction.slices_used,
            fields["tag_status"],
            prediction.timings.total_s,
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
    renewed: float  # time.monotonic() of the claim or the last lease extension


class Prefetcher:
    """Prepares up to ``depth`` leased classify jobs ahead; hands them out in claim order.

    The worker claims jobs while ``room`` > 0, ``submit``s them, and runs ``next`` for the
    oldest one. ``renew`` extends the leases of the jobs in flight that have waited a third of
    a lease, and runs while the oldest one's preparation is awaited too, so a slow series
    keeps its lease and the ones behind it keep theirs.
    """

    def __init__(self, handler: ClassifySeries, queue: JobQueue, threads: int, depth: int) -> None:
        self.handler = handler
        self.queue = queue
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
        future = self._pool.submit(self.handler.prepare, job)
        self._inflight.append(_InFlight(job, future, time.monotonic()))

    def next(self) -> tuple[LeasedJob, Callable[[], JobResult]] | None:
        """The oldest job and a call that waits for its preparation and completes it."""
        if not self._inflight:
            return None
        item = self._inflight[0]

        def compute() -> JobResult:
            try:
                while True:
                    try:
                        prepared = item.future.result(timeout=self._every())
                        break
                    except FutureTimeout:
                        self.renew()
                        if item not in self._inflight:
                            raise LeaseLost(
                                f"job {item.job.id}: lease lost while prepared"
                            ) from None
            finally:
                if item in self._inflight:
                    self._inflight.remove(item)
            return self.handler.complete(item.job, prepared)

        return item.job, compute

    def _every(self) -> float:
        return self.queue.lease.total_seconds() / 3

    def renew(self) -> None:
        """Extend the leases held for a third of their length; drop jobs whose lease is gone."""
        now = time.monotonic()
        for item in list(self._inflight):
            if now - item.renewed < self._every():
                continue
            try:
                self.queue.extend(item.job.id)
                item.renewed = now
            except LeaseLost:
                log.warning("job %d (classify): lease lost while waiting; dropped", item.job.id)
                item.future.cancel()
                self._inflight.remove(item)

    def close(self) -> None:
        """Stop the threads (after the worker has completed or dropped every job in flight)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def prepare_ahead(
    items: Iterable[T], prepare: Callable[[T], R], threads: int, depth: int
) -> Iterator[tuple[T, Future[R]]]:
    """``(item, future of prepare(item))`` in order, with at most ``depth`` in flight.

    The caller consumes each future (inference) while the next ones are being prepared.
    """
    pending: deque[tuple[T, Future[R]]] = deque()
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="classify-prepare") as pool:
        try:
            for item in items:
                pending.append((item, pool.submit(prepare, item)))
                if len(pending) >= max(1, depth):
                    yield pending.popleft()
            while pending:
                yield pending.popleft()
        finally:
            for _, future in pending:
                future.cancel()
