"""Several sweepers and several claimers at once on PostgreSQL, as several worker hosts run
them: each complete series is queued once, and each job is leased by one worker only.

Each thread has its own engine (its own connections), as a separate process would.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from ivcontrast.store.db import Database
from ivcontrast.store.models import Job, Series, SeriesState, Study, utcnow
from ivcontrast.store.queue import JobQueue
from ivcontrast.worker.completion import CompletionRule
from ivcontrast.worker.sweep import CHECK, sweep_once
from tests.support import pg

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SERIES = 300
THREADS = 6
RULE = CompletionRule(quiet_seconds=60, settle_seconds=5)


@pytest.fixture
def url(postgres_url: str) -> str:
    url = pg.create_database(postgres_url)
    db = Database(url)
    db.upgrade()
    long_ago = utcnow() - timedelta(hours=1)
    with db.write() as session:
        study = Study(study_uid="1.2.3")
        session.add(study)
        session.flush()
        session.execute(
            insert(Series),
            [
                {
                    "series_uid": f"1.2.3.{i}",
                    "study_id": study.id,
                    "modality": "CT",
                    "state": SeriesState.RECEIVING,
                    "instance_count": 12,
                    "first_received_at": long_ago,
                    "last_received_at": long_ago,
                }
                for i in range(SERIES)
            ],
        )
    db.dispose()
    return url


def in_threads(url: str, work: Callable[[Database, int], list[object]]) -> list[list[object]]:
    """Run ``work(db, index)`` in THREADS threads at once, each with its own engine."""
    barrier = threading.Barrier(THREADS)
    out: list[list[object]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        db = Database(url)
        try:
            barrier.wait()
            out[index] = work(db, index)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[0]
    return out


def test_concurrent_sweepers_queue_each_series_once(url: str) -> None:
    def sweep(db: Database, _index: int) -> list[object]:
        queued: list[object] = []
        for _ in range(20):
            queued += sweep_once(db, RULE, max_attempts=3)
        return queued

    per_thread = in_threads(url, sweep)
    queued = Counter(uid for uids in per_thread for uid in uids)
    assert len(queued) == SERIES and set(queued.values()) == {1}
    db = Database(url)
    try:
        with db.session() as session:
            jobs = Counter(session.scalars(select(Job.series_id).where(Job.kind == CHECK)))
            states = Counter(session.scalars(select(Series.state)))
        assert len(jobs) == SERIES and set(jobs.values()) == {1}
        assert states == {SeriesState.QUEUED: SERIES}
    finally:
        db.dispose()

    def claim(db: Database, index: int) -> list[object]:
        queue = JobQueue(db, f"worker-{index}", lease_seconds=60, backoff_seconds=1)
        claimed: list[object] = []
        while (job := queue.claim([CHECK])) is not None:
            claimed.append(job.id)
            queue.finish(job.id, "done")
        return claimed

    per_thread = in_threads(url, claim)
    claimed = Counter(job for jobs in per_thread for job in jobs)
    assert len(claimed) == SERIES and set(claimed.values()) == {1}
    # The work was shared, not taken by one thread while the others waited on locks.
    assert sum(1 for jobs in per_thread if jobs) >= 2
