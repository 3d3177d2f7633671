"""The durable job queue: enqueue once, lease, release, retry, reap."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from ivcontrast.clock import ManualClock
from ivcontrast.store.db import Database
from ivcontrast.store.models import Job, JobState, Series, SeriesState, Study, utcnow
from ivcontrast.store.queue import JobQueue, LeaseLost, enqueue, reap_expired
from ivcontrast.worker.jobs import mark_series_failed


@pytest.fixture
def db(any_db: Database) -> Database:
    """Every test here runs on SQLite and on PostgreSQL."""
    return any_db


@pytest.fixture
def series_id(db: Database) -> int:
    with db.write() as session:
        study = Study(study_uid="1.2.3")
        series = Series(series_uid="1.2.3.4", study=study, modality="CT", state=SeriesState.QUEUED)
        session.add_all([study, series])
        session.flush()
        return series.id


def queue(db: Database, owner: str = "w1", lease: float = 60, backoff: float = 10) -> JobQueue:
    return JobQueue(db, owner, lease_seconds=lease, backoff_seconds=backoff)


def test_enqueue_is_idempotent_per_version(db: Database, series_id: int) -> None:
    with db.write() as session:
        assert enqueue(session, "check", series_id, 1) is True
        assert enqueue(session, "check", series_id, 1) is False
        assert enqueue(session, "check", series_id, 2) is True
        assert enqueue(session, "writeback", series_id, 1, key="PACS1") is True
        assert enqueue(session, "writeback", series_id, 1, key="PACS2") is True
    with db.session() as session:
        assert len(session.scalars(select(Job)).all()) == 4


def test_claim_takes_each_job_once_and_only_known_kinds(db: Database, series_id: int) -> None:
    with db.write() as session:
        enqueue(session, "check", series_id, 1)
        enqueue(session, "classify", series_id, 1)
    a, b = queue(db, "a"), queue(db, "b")
    job = a.claim(["check"])
    assert job is not None and job.kind == "check" and job.attempts == 1
    assert b.claim(["check"]) is None
    assert b.claim(["writeback"]) is None
    other = b.claim(["check", "classify"])
    assert other is not None and other.kind == "classify"


def test_finish_applies_effects_with_the_release(db: Database, series_id: int) -> None:
    with db.write() as session:
        enqueue(session, "check", series_id, 1)
    q = queue(db)
    job = q.claim(["check"])
    assert job is not None

    def effects(session):  # type: ignore[no-untyped-def]
        session.get(Series, series_id).state = SeriesState.SKIPPED

    q.finish(job.id, "skipped", effects)
    with db.session() as session:
        row = session.get(Job, job.id)
        assert (row.state, row.outcome, row.lease_owner) == (JobState.DONE, "skipped", None)
        assert session.get(Series, series_id).state == SeriesState.SKIPPED


def test_retry_with_backoff_then_final_failure(db: Database, series_id: int) -> None:
    with db.write() as session:
        enqueue(session, "check", series_id, 1, max_attempts=2)
    q = queue(db, backoff=10)
    now = utcnow()
    job = q.claim(["check"], now=now)
    assert job is not None
    assert q.fail(job.id, "boom", now=now, on_final=mark_series_failed) is True
    assert q.claim(["check"], now=now + timedelta(seconds=9)) is None  # backing off
    job = q.claim(["check"], now=now + timedelta(seconds=11))
    assert job is not None and job.attempts == 2
    assert q.fail(job.id, "boom again", now=now, on_final=mark_series_failed) is False
    with db.session() as session:
        row = session.get(Job, job.id)
        assert (row.state, row.error) == (JobState.FAILED, "boom again")
        series = session.get(Series, series_id)
        assert series.state == SeriesState.FAILED and "boom again" in (series.error or "")


def test_expired_lease_is_reaped_and_the_old_owner_cannot_finish(
    db: Database, series_id: int
) -> None:
    with db.write() as session:
        enqueue(session, "check", series_id, 1)
    dead, alive = queue(db, "dead", lease=30), queue(db, "alive")
    now = utcnow()
    job = dead.claim(["check"], now=now)
    assert job is not None
    assert reap_expired(db, now=now + timedelta(seconds=29)) == 0
    assert reap_expired(db, now=now + timedelta(seconds=31)) == 1
    again = alive.claim(["check"], now=now + timedelta(seconds=31))
    assert again is not None and again.id == job.id and again.attempts == 2
    with pytest.raises(LeaseLost):
        dead.finish(job.id, "eligible")
    alive.finish(again.id, "eligible")


def test_reaping_the_last_attempt_fails_job_and_series(db: Database, series_id: int) -> None:
    with db.write() as session:
        enqueue(session, "check", series_id, 1, max_attempts=1)
    now = utcnow()
    assert queue(db, lease=1).claim(["check"], now=now) is not None
    reap_expired(db, on_final=mark_series_failed, now=now + timedelta(seconds=5))
    with db.session() as session:
        assert session.scalars(select(Job)).one().state == JobState.FAILED
        assert session.get(Series, series_id).state == SeriesState.FAILED


def lease_expiry(db: Database, job_id: int) -> datetime | None:
    with db.session() as session:
        return session.get(Job, job_id).lease_expires_at  # type: ignore[union-attr]


def eventually(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for another thread to act (polling; no margin of time is involved)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_long_job_keeps_its_lease_while_it_runs(db: Database, series_id: int) -> None:
    with db.write() as session:
        enqueue(session, "writeback", series_id, 1, key="PACS1")
        enqueue(session, "writeback", series_id, 1, key="PACS2")
    clock = ManualClock()
    owner = JobQueue(db, "a", lease_seconds=60, backoff_seconds=10, clock=clock)
    other = JobQueue(db, "b", lease_seconds=60, backoff_seconds=10, clock=clock)
    kept, dropped = owner.claim(["writeback"]), owner.claim(["writeback"])
    assert kept is not None and dropped is not None
    with owner.held(kept.id):
        for _ in range(5):  # two and a half leases, half a lease at a time
            clock.advance(30)
            # The keeper's thread wakes on the clock and extends the lease from now.
            renewed = clock.now() + timedelta(seconds=60)
            eventually(lambda until=renewed: lease_expiry(db, kept.id) == until)
        # Another worker reaps what has expired: the job that was not held.
        assert reap_expired(db, now=clock.now()) == 1
        assert other.claim(["writeback"]) is not None  # ``dropped``, for its second attempt
    owner.finish(kept.id, "sent")
    with pytest.raises(LeaseLost):
        owner.finish(dropped.id, "sent")
    with db.session() as session:
        assert session.get(Job, kept.id).state == JobState.DONE  # type: ignore[union-attr]
