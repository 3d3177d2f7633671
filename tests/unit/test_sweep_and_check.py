"""Completion sweep and the eligibility job over a real (SQLite) store."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from ivcontrast.config import load_settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import (
    Association,
    Instance,
    Job,
    JobState,
    Series,
    SeriesState,
    Study,
    utcnow,
)
from ivcontrast.worker.completion import CompletionRule
from ivcontrast.worker.eligibility import EligibilityRule
from ivcontrast.worker.jobs import CHECK, CheckSeries
from ivcontrast.worker.service import Worker
from ivcontrast.worker.sweep import sweep_once

RULE = CompletionRule(quiet_seconds=60, settle_seconds=5)


@pytest.fixture
def db(any_db: Database) -> Database:
    """Every test here runs on SQLite and on PostgreSQL."""
    return any_db


def check_only(settings, db: Database):  # type: ignore[no-untyped-def]
    """The eligibility handler alone: these tests stop where classification begins."""
    rule = EligibilityRule(settings.worker.min_slices, settings.worker.classify_derived)
    return {CHECK: CheckSeries(db, rule, settings.worker.max_attempts)}


def add_series(
    db: Database,
    uid: str,
    *,
    last: datetime,
    association_state: str = "released",
    modality: str = "CT",
    slices: int = 12,
) -> None:
    with db.write() as session:
        study = session.scalar(select(Study).where(Study.study_uid == "1.2.9")) or Study(
            study_uid="1.2.9"
        )
        assoc = Association(
            id=f"a-{uid}",
            listener="h:1",
            calling_ae="SCU",
            called_ae="IVC",
            peer_host="127.0.0.1",
            state=association_state,
            ended_at=last if association_state != "open" else None,
        )
        series = Series(
            series_uid=uid,
            study=study,
            modality=modality,
            last_received_at=last,
            instance_count=slices,
        )
        session.add_all([assoc, series])
        session.flush()
        for k in range(slices):
            session.add(
                Instance(
                    sop_instance_uid=f"{uid}.{k + 1}",
                    series_id=series.id,
                    association_id=assoc.id,
                    sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                    transfer_syntax_uid="1.2.840.10008.1.2.1",
                    path=f"x/{k}.dcm",
                    size_bytes=1,
                    sha256="0" * 64,
                    image_type="ORIGINAL\\PRIMARY\\AXIAL",
                    rows=64,
                    columns=64,
                    pixel_spacing="1\\1",
                    image_orientation="1\\0\\0\\0\\1\\0",
                    image_position=f"0\\0\\{k * 2.0}",
                )
            )


def jobs(db: Database) -> list[tuple[str, int, int]]:
    with db.session() as session:
        return [
            (j.kind, j.series_id, j.series_version)
            for j in session.scalars(select(Job).order_by(Job.id))
        ]


def test_sweep_queues_released_and_quiet_series_once(db: Database) -> None:
    now = utcnow()
    add_series(db, "1.1", last=now - timedelta(seconds=6))  # released and settled
    add_series(db, "1.2", last=now - timedelta(seconds=2))  # released, not settled
    add_series(db, "1.3", last=now - timedelta(seconds=30), association_state="open")
    add_series(db, "1.4", last=now - timedelta(seconds=61), association_state="aborted")
    assert sorted(sweep_once(db, RULE, 3, now=now)) == ["1.1", "1.4"]
    assert sweep_once(db, RULE, 3, now=now) == []  # exactly once
    assert sweep_once(db, RULE, 3, now=now + timedelta(seconds=4)) == ["1.2"]
    assert sweep_once(db, RULE, 3, now=now + timedelta(seconds=31)) == ["1.3"]
    assert len(jobs(db)) == 4
    with db.session() as session:
        assert {s.state for s in session.scalars(select(Series))} == {SeriesState.QUEUED}


def test_worker_checks_eligibility_and_queues_classification(tmp_path, db: Database) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(
        env={}, overrides={"data_dir": str(tmp_path), "worker.settle_seconds": 0}
    )
    old = utcnow() - timedelta(seconds=120)
    add_series(db, "2.1", last=old)
    add_series(db, "2.2", last=old, modality="MR")
    add_series(db, "2.3", last=old, slices=3)
    worker = Worker(settings, db, check_only(settings, db))
    assert worker.run_until_idle() == 3
    with db.session() as session:
        states = {s.series_uid: (s.state, s.skip_reason) for s in session.scalars(select(Series))}
        pending = session.scalars(select(Job).where(Job.state == JobState.PENDING)).all()
    assert states == {
        "2.1": (SeriesState.ELIGIBLE, None),
        "2.2": (SeriesState.SKIPPED, "not CT (modality MR)"),
        "2.3": (SeriesState.SKIPPED, "too few slices (3 < 10)"),
    }
    # The classify job waits for a worker that has a classifier.
    assert [(j.kind, j.series_version) for j in pending] == [("classify", 1)]


def test_check_of_a_reopened_series_leaves_the_new_version_alone(tmp_path, db: Database) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path)})
    add_series(db, "3.1", last=utcnow() - timedelta(seconds=120))
    assert sweep_once(db, RULE, 3) == ["3.1"]
    with db.write() as session:  # a late instance arrives: the listener re-opens the series
        series = session.scalar(select(Series))
        series.state, series.version = SeriesState.RECEIVING, 2
    worker = Worker(settings, db, check_only(settings, db), sweep=False)
    assert worker.run_until_idle() == 1
    with db.session() as session:
        series = session.scalar(select(Series))
        assert (series.state, series.version) == (SeriesState.RECEIVING, 2)
        assert session.scalars(select(Job).where(Job.kind == "classify")).all() == []


def test_restart_ends_the_leases_of_a_dead_worker_on_this_host(tmp_path, db: Database) -> None:  # type: ignore[no-untyped-def]
    import socket
    import subprocess
    import sys

    from ivcontrast.store.models import Worker as WorkerRow
    from ivcontrast.store.queue import JobQueue

    settings = load_settings(
        env={}, overrides={"data_dir": str(tmp_path), "worker.lease_seconds": 3600}
    )
    add_series(db, "4.1", last=utcnow() - timedelta(seconds=120))
    assert sweep_once(db, RULE, 3) == ["4.1"]
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)
    with db.write() as session:
        session.add(WorkerRow(id="dead", host=socket.gethostname(), pid=dead_pid, kinds="check"))
    assert JobQueue(db, "dead", lease_seconds=3600, backoff_seconds=1).claim(["check"]) is not None
    # A restarted worker must not wait an hour for the dead one's lease.
    assert Worker(settings, db, check_only(settings, db), sweep=False).run_until_idle() == 1
    with db.session() as session:
        assert session.get(WorkerRow, "dead").stopped_at is not None
        assert session.scalar(select(Series)).state == SeriesState.ELIGIBLE
