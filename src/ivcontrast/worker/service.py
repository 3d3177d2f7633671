"""The worker process: completion sweep, lease reaping, heartbeat and the job loop.

One loop: each turn it runs the sweep when it is due, reaps expired leases, then claims and
runs one job of a kind it has a handler for. Classify jobs wait in the queue until a worker
with a classifier takes them; a worker without one never claims them. A worker with one
keeps a few classify jobs in flight (``worker.classify.Prefetcher``): their series are read
and preprocessed in a small thread pool while this loop runs the network for the oldest.

Time comes from one ``Clock`` (``ivcontrast.clock``), passed to the queue and so to its
``LeaseKeeper``, which keeps the leases of the running job and of the jobs in flight alike.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from ivcontrast.clock import SYSTEM_CLOCK, Clock
from ivcontrast.config import Settings
from ivcontrast.processes import hostname, pid_alive, unique_process_id
from ivcontrast.store.db import Database
from ivcontrast.store.models import Worker as WorkerRow
from ivcontrast.store.queue import (
    JobHandler,
    JobQueue,
    JobResult,
    LeasedJob,
    LeaseLost,
    PermanentJobError,
    expire_leases,
    reap_expired,
)
from ivcontrast.worker.completion import CompletionRule
from ivcontrast.worker.eligibility import EligibilityRule
from ivcontrast.worker.jobs import CHECK, CLASSIFY, CheckSeries, mark_series_failed
from ivcontrast.worker.retention import prune_once
from ivcontrast.worker.sweep import sweep_once

if TYPE_CHECKING:
    from ivcontrast.worker.classify import Prefetcher

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
# Retention is checked at start and then this often (it removes whole series, days old).
RETENTION_CHECK_SECONDS = 600.0


def build_handlers(settings: Settings, db: Database) -> dict[str, JobHandler]:
    """The handlers every worker has; the classifier (when a model package loads) and
    write-back (when enabled) add theirs."""
    from ivcontrast.worker.classify import ClassifySeries, load_classifier

    rule = EligibilityRule(settings.worker.min_slices, settings.worker.classify_derived)
    handlers: dict[str, JobHandler] = {CHECK: CheckSeries(db, rule, settings.worker.max_attempts)}
    classifier = load_classifier(settings)
    if classifier is not None:
        handlers[CLASSIFY] = ClassifySeries(settings, db, classifier)
    if settings.writeback.enabled:
        from ivcontrast.writeback import WRITEBACK
        from ivcontrast.writeback.handler import WritebackHandler

        handlers[WRITEBACK] = WritebackHandler(settings, db)
    return handlers


class Worker:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        handlers: Mapping[str, JobHandler],
        *,
        sweep: bool = True,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings.worker
        self.db = db
        self.handlers = dict(handlers)
        self.sweep = sweep
        self.clock = clock
        self.id = unique_process_id()
        self.queue = JobQueue(
            db,
            self.id,
            self.settings.lease_seconds,
            self.settings.retry_backoff_seconds,
            clock=clock,
        )
        self.rule = CompletionRule(self.settings.quiet_seconds, self.settings.settle_seconds)
        self.spool = settings.spool_path
        self._next_sweep = 0.0
        self._next_reap = 0.0
        self._next_heartbeat = 0.0
        self._next_retention = 0.0
        self._done = 0
        self._failed = 0
        self.prefetch: Prefetcher | None = None
        if CLASSIFY in self.handlers:
            from ivcontrast.worker.classify import ClassifySeries

            classify = self.handlers[CLASSIFY]
            if isinstance(classify, ClassifySeries):
                self.prefetch = classify.prefetcher(self.queue)
        self._direct_kinds = [
            kind for kind in self.handlers if self.prefetch is None or kind != CLASSIFY
        ]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Register, and reap the leases that a crashed predecessor left behind."""
        now = self.clock.now()
        with self.db.write() as session:
            session.add(
                WorkerRow(
                    id=self.id,
                    host=hostname(),
                    pid=os.getpid(),
                    kinds=",".join(sorted(self.handlers)),
                    started_at=now,
                    heartbeat_at=now,
                )
            )
        self._expire_leases_of_dead_neighbours()
        reap_expired(self.db, on_final=mark_series_failed, now=self.clock.now())
        self._next_reap = self.clock.monotonic() + self.settings.reap_seconds
        log.info("worker %s started; job kinds: %s", self.id, ", ".join(sorted(self.handlers)))

    def _expire_leases_of_dead_neighbours(self) -> None:
        """A worker on this host whose process is gone will never renew its leases: end
        them now rather than after ``lease_seconds``, so a restart resumes at once. (If the
        pid belongs to another namespace after all, its owner only loses the race to finish:
        ``finish`` checks the lease, so nothing is recorded twice.)"""
        host = hostname()
        with self.db.write() as session:
            rows = session.scalars(
                select(WorkerRow).where(
                    WorkerRow.host == host, WorkerRow.stopped_at.is_(None), WorkerRow.id != self.id
                )
            ).all()
            dead = [row for row in rows if not pid_alive(row.pid)]
            now = self.clock.now()
            for row in dead:
                row.stopped_at = now
            if dead:
                expired = expire_leases(session, [row.id for row in dead], now)
                log.warning(
                    "%d worker(s) on this host died without stopping; %d of their leases ended",
                    len(dead),
                    expired,
                )

    def stop(self) -> None:
        """Complete the classify jobs in flight (seconds), then deregister."""
        if self.prefetch is not None:
            while (head := self.prefetch.next()) is not None:
                self._complete(*head)
            self.prefetch.close()
        with self.db.write() as session:
            session.execute(
                update(WorkerRow)
                .where(WorkerRow.id == self.id)
                .values(stopped_at=self.clock.now(), jobs_done=self._done, jobs_failed=self._failed)
            )
        log.info("worker %s stopped (%d jobs done, %d failed)", self.id, self._done, self._failed)

    def run_forever(self, stop: threading.Event) -> None:
        self.start()
        try:
            while not stop.is_set():
                if not self.turn():
                    stop.wait(self.settings.poll_seconds)
        finally:
            self.stop()

    def run_until_idle(self) -> int:
        """Sweep once and run every job available now; returns the number of jobs run."""
        self.start()
        try:
            self._next_sweep = 0.0
            count = 0
            while self.turn():
                count += 1
            return count
        finally:
            self.stop()

    # -- one turn ----------------------------------------------------------------------------

    def turn(self) -> bool:
        """Housekeeping when due, then one job of the other kinds and the oldest classify job
        in flight. True if a job was run.

        While that classify job is still being prepared, this thread runs more of the other
        jobs (checks are milliseconds) instead of waiting, so a burst of completed series
        reaches the classify queue together and their reading overlaps inference.
        """
        now = self.clock.monotonic()
        if self.sweep and now >= self._next_sweep:
            sweep_once(self.db, self.rule, self.settings.max_attempts, now=self.clock.now())
            self._next_sweep = now + self.settings.sweep_seconds
        if now >= self._next_reap:
            reap_expired(self.db, on_final=mark_series_failed, now=self.clock.now())
            self._next_reap = now + self.settings.reap_seconds
        if now >= self._next_heartbeat:
            self._heartbeat()
            self._next_heartbeat = now + HEARTBEAT_SECONDS
        if self.sweep and self.settings.spool_retention_days > 0 and now >= self._next_retention:
            prune_once(
                self.db, self.spool, self.settings.spool_retention_days, now=self.clock.now()
            )
            self._next_retention = now + RETENTION_CHECK_SECONDS
        ran = False
        self._fill_pipeline()
        while self._direct_kinds:
            job = self.queue.claim(self._direct_kinds)
            if job is None:
                break
            self.run_job(job)
            ran = True
            if self.prefetch is None or not self.prefetch.preparing:
                break
            self._fill_pipeline()
        head = self.prefetch.next() if self.prefetch is not None else None
        if head is not None:
            self._complete(*head)
            ran = True
        return ran

    def _fill_pipeline(self) -> None:
        """Claim classify jobs while the pipeline has room; their preparation starts."""
        if self.prefetch is None:
            return
        self.prefetch.renew()
        while self.prefetch.room > 0:
            job = self.queue.claim([CLASSIFY])
            if job is None:
                return
            self.prefetch.submit(job)

    def run_job(self, job: LeasedJob) -> None:
        def compute() -> JobResult:
            with self.queue.held(job.id):
                return self.handlers[job.kind](job)

        self._complete(job, compute)

    def _complete(self, job: LeasedJob, compute: Callable[[], JobResult]) -> None:
        """Run ``compute`` and release the job with its outcome, or as failed."""
        try:
            result = compute()
            self.queue.finish(job.id, result.outcome, result.effects)
            self._done += 1
        except LeaseLost:
            log.warning(
                "job %d (%s): lease lost before it finished; not recorded", job.id, job.kind
            )
        except PermanentJobError as exc:
            self._fail(job, str(exc), retry=False)
        except Exception as exc:
            # Any other error may be transient (a file still being written, a busy database):
            # retried with backoff, and the traceback is logged for the engineer.
            log.exception("job %d (%s) failed on attempt %d", job.id, job.kind, job.attempts)
            self._fail(job, f"{type(exc).__name__}: {exc}", retry=True)

    def _fail(self, job: LeasedJob, error: str, *, retry: bool) -> None:
        try:
            retried = self.queue.fail(job.id, error, retry=retry, on_final=mark_series_failed)
        except LeaseLost:
            log.warning("job %d (%s): lease lost while failing it", job.id, job.kind)
            return
        if not retried:
            self._failed += 1
        log.warning(
            "job %d (%s) %s: %s",
            job.id,
            job.kind,
            "will be retried" if retried else "failed",
            error,
        )

    def _heartbeat(self) -> None:
        with self.db.write() as session:
            session.execute(
                update(WorkerRow)
                .where(WorkerRow.id == self.id)
                .values(
                    heartbeat_at=self.clock.now(), jobs_done=self._done, jobs_failed=self._failed
                )
            )
