"""A durable job queue in the store: enqueue once, lease, release with an outcome.

The queue and the handler contract (``JobHandler``, ``JobResult``) live in the store so
that the worker and write-back both build on it without importing each other.

A worker claims a pending job and holds a lease until ``lease_expires_at``; it releases the
job as done (with an outcome) or failed (retried with exponential backoff until
``max_attempts``). A worker that dies leaves its lease to expire; ``reap_expired`` puts such
jobs back in the queue. Claiming uses ``FOR UPDATE SKIP LOCKED`` so several workers on
PostgreSQL never take the same job; on SQLite the write transaction is exclusive anyway.

A job's side effects and its release are committed in one transaction (``finish``), and
only while the lease is still held, so a job is never recorded twice.

A worker keeps the leases of the jobs it holds with one ``LeaseKeeper`` (``JobQueue.keeper``):
a job running in the worker's thread (``held``) and the classify jobs waiting in its prefetch
pipeline alike. Time comes from the queue's ``Clock``, so tests move it instead of sleeping.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ivcontrast.clock import SYSTEM_CLOCK, Clock
from ivcontrast.store.db import Database
from ivcontrast.store.models import Job, JobState, utcnow

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """The job's lease expired and it was reaped or taken by another worker."""


class PermanentJobError(Exception):
    """Retrying will not help (unreadable or inconsistent data); fail the job now."""


@dataclass(frozen=True)
class LeasedJob:
    id: int
    kind: str
    series_id: int
    series_version: int
    key: str
    payload: dict[str, Any] | None
    attempts: int
    max_attempts: int


@dataclass(frozen=True)
class JobResult:
    """What a handler did: an outcome, and the store changes committed with the release."""

    outcome: str
    effects: Callable[[Session], None] | None = None


class JobHandler(Protocol):
    """Runs one kind of job; raises PermanentJobError for bad data, anything else is retried."""

    def __call__(self, job: LeasedJob) -> JobResult: ...


def enqueue(
    session: Session,
    kind: str,
    series_id: int,
    series_version: int,
    *,
    key: str = "",
    payload: dict[str, Any] | None = None,
    max_attempts: int = 3,
    available_at: datetime | None = None,
) -> bool:
    """Add a job in the caller's transaction; False if the same job already exists."""
    values = {
        "kind": kind,
        "series_id": series_id,
        "series_version": series_version,
        "key": key,
        "payload": payload,
        "state": JobState.PENDING,
        "attempts": 0,
        "max_attempts": max_attempts,
        "available_at": available_at or utcnow(),
        "created_at": utcnow(),
    }
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert(Job)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["kind", "series_id", "series_version", "key"])
        .returning(Job.id)
    )
    # rowcount is unreliable for ON CONFLICT DO NOTHING across drivers; RETURNING is not.
    return session.execute(stmt).first() is not None


class JobQueue:
    """Lease and release jobs on behalf of one worker (``owner``)."""

    def __init__(
        self,
        db: Database,
        owner: str,
        lease_seconds: float,
        backoff_seconds: float,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.db = db
        self.owner = owner
        self.lease = timedelta(seconds=lease_seconds)
        self.backoff_seconds = backoff_seconds
        self.clock = clock
        self.keeper = LeaseKeeper(self)

    def claim(self, kinds: Collection[str], now: datetime | None = None) -> LeasedJob | None:
        """Lease the oldest available job of one of ``kinds``, or None."""
        now = now or self.clock.now()
        with self.db.write() as session:
            job = session.scalars(
                select(Job)
                .where(Job.state == JobState.PENDING, Job.kind.in_(kinds), Job.available_at <= now)
                .order_by(Job.available_at, Job.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if job is None:
                return None
            job.state = JobState.LEASED
            job.lease_owner = self.owner
            job.lease_expires_at = now + self.lease
            job.attempts += 1
            job.started_at = now
            log.debug("leased job %d (%s, attempt %d)", job.id, job.kind, job.attempts)
            return LeasedJob(
                id=job.id,
                kind=job.kind,
                series_id=job.series_id,
                series_version=job.series_version,
                key=job.key,
                payload=job.payload,
                attempts=job.attempts,
                max_attempts=job.max_attempts,
            )

    def extend(self, job_id: int, now: datetime | None = None) -> None:
        """Renew the lease of a long job; raises LeaseLost if it is no longer ours."""
        now = now or self.clock.now()
        with self.db.write() as session:
            self._held(session, job_id).lease_expires_at = now + self.lease

    def held(self, job_id: int) -> AbstractContextManager[None]:
        """Keep the job's lease while the block runs (``LeaseKeeper.held``)."""
        return self.keeper.held(job_id)

    def finish(
        self,
        job_id: int,
        outcome: str,
        effects: Callable[[Session], None] | None = None,
        now: datetime | None = None,
    ) -> None:
        """Apply ``effects`` and mark the job done, in one transaction, if the lease is held."""
        with self.db.write() as session:
            job = self._held(session, job_id)
            if effects is not None:
                effects(session)
            job.state = JobState.DONE
            job.outcome = outcome
            job.error = None
            job.finished_at = now or self.clock.now()
            job.lease_owner = None
            job.lease_expires_at = None

    def fail(
        self,
        job_id: int,
        error: str,
        *,
        retry: bool = True,
        on_final: Callable[[Session, Job], None] | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Release a failed attempt; retried later unless out of attempts or ``retry`` is False.

        ``on_final`` runs in the same transaction when the job fails for good. Returns True
        when the job will be retried.
        """
        now = now or self.clock.now()
        with self.db.write() as session:
            job = self._held(session, job_id)
            job.error = error
            job.lease_owner = None
            job.lease_expires_at = None
            if retry and job.attempts < job.max_attempts:
                job.state = JobState.PENDING
                # A job may carry its own first delay (write-back keeps a PACS's own pace).
                base = (job.payload or {}).get("backoff_seconds", self.backoff_seconds)
                job.available_at = now + timedelta(seconds=base * 2 ** (job.attempts - 1))
                return True
            job.state = JobState.FAILED
            job.outcome = "failed"
            job.finished_at = now
            if on_final is not None:
                on_final(session, job)
            return False

    def _held(self, session: Session, job_id: int) -> Job:
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one()
        if job.state != JobState.LEASED or job.lease_owner != self.owner:
            raise LeaseLost(f"job {job_id} is no longer leased by {self.owner}")
        return job


class LeaseKeeper:
    """Keeps the leases of the jobs one worker holds, one mechanism for every path.

    A tracked job's lease is extended once a third of its length has passed (on the queue's
    clock) since it was tracked or last extended. ``renew`` does that for every tracked job;
    the worker's thread calls it between jobs and while it waits for a prepared series, and
    ``held`` calls it from a thread while a long job keeps the worker's thread busy (a
    write-back of thousands of instances to a slow PACS); both wait ``until_due``. A job
    whose lease is gone is dropped and remembered as lost; ``finish`` reports it to whoever
    completes the job. (A failed renewal, such as a busy database, is tried again a third of
    a lease later.)
    """

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self._lock = threading.Lock()
        self._renewed: dict[int, float] = {}  # job id -> clock.monotonic() of the last renewal
        self._lost: set[int] = set()

    @property
    def every(self) -> float:
        return self.queue.lease.total_seconds() / 3

    def track(self, job_id: int) -> None:
        """Keep this job's lease from now on (call it when the job was just claimed)."""
        with self._lock:
            self._renewed[job_id] = self.queue.clock.monotonic()
            self._lost.discard(job_id)

    def forget(self, job_id: int) -> None:
        with self._lock:
            self._renewed.pop(job_id, None)
            self._lost.discard(job_id)

    def until_due(self) -> float:
        """Seconds until the next lease is due for renewal (a third of a lease if none is
        held): what a thread that keeps them waits, so a renewal comes on time however long
        the work before the wait took."""
        with self._lock:
            if not self._renewed:
                return self.every
            return max(0.0, min(self._renewed.values()) + self.every - self.queue.clock.monotonic())

    def lost(self, job_id: int) -> bool:
        """True once a renewal found that the job's lease was taken away."""
        with self._lock:
            return job_id in self._lost

    def renew(self) -> set[int]:
        """Extend the leases that are due; returns the jobs found lost this time."""
        with self._lock:  # one renewal at a time: the worker's thread and a ``held`` thread
            now = self.queue.clock.monotonic()
            lost: set[int] = set()
            for job_id, renewed in list(self._renewed.items()):
                if now - renewed < self.every:
                    continue
                try:
                    self.queue.extend(job_id)
                    self._renewed[job_id] = now
                except LeaseLost:
                    log.warning("job %d: lease lost while it was held", job_id)
                    del self._renewed[job_id]
                    lost.add(job_id)
                except Exception:  # a busy or restarting database: try again next period
                    log.exception("job %d: lease renewal failed", job_id)
                    self._renewed[job_id] = now
            self._lost |= lost
            return lost

    @contextmanager
    def held(self, job_id: int) -> Iterator[None]:
        """Track the job, and ``renew`` from a thread every third of a lease while the block
        runs. A lost lease is logged here and reported by ``finish``."""
        stop = threading.Event()

        def keep() -> None:
            while not self.queue.clock.wait(stop, self.until_due()):
                self.renew()

        self.track(job_id)
        keeper = threading.Thread(target=keep, name=f"lease-{job_id}", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join()
            self.forget(job_id)


def expire_leases(session: Session, owners: Collection[str], now: datetime) -> int:
    """End the leases held by ``owners`` (workers known to be dead); ``reap_expired`` then
    re-queues their jobs."""
    jobs = session.scalars(
        select(Job)
        .where(Job.state == JobState.LEASED, Job.lease_owner.in_(owners))
        .with_for_update()
    ).all()
    for job in jobs:
        job.lease_expires_at = now - timedelta(microseconds=1)
    return len(jobs)


def reap_expired(
    db: Database,
    on_final: Callable[[Session, Job], None] | None = None,
    now: datetime | None = None,
) -> int:
    """Put jobs whose lease expired back in the queue, or fail those out of attempts."""
    now = now or utcnow()
    with db.write() as session:
        expired = session.scalars(
            select(Job)
            .where(Job.state == JobState.LEASED, Job.lease_expires_at < now)
            .with_for_update(skip_locked=True)
        ).all()
        for job in expired:
            job.lease_owner = None
            job.lease_expires_at = None
            if job.attempts >= job.max_attempts:
                job.state = JobState.FAILED
                job.outcome = "failed"
                job.error = "lease expired on the last attempt (worker died or hung)"
                job.finished_at = now
                if on_final is not None:
                    on_final(session, job)
            else:
                job.state = JobState.PENDING
                job.available_at = now
                job.error = "lease expired (worker died or hung); retried"
    if expired:
        log.warning("reaped %d expired job leases", len(expired))
    return len(expired)
