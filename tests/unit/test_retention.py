"""Spool retention over a real store (SQLite and PostgreSQL) and real files in a spool."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import select, update

from ivcontrast.config import load_settings
from ivcontrast.scp.header import instance_header, read_file_header
from ivcontrast.scp.spool import relative_path
from ivcontrast.store.db import Database
from ivcontrast.store.ingest import record_instance
from ivcontrast.store.models import Event, Instance, Job, JobState, Series, SeriesState, utcnow
from ivcontrast.store.queue import enqueue
from ivcontrast.store.values import StoredFile
from ivcontrast.worker.eligibility import EligibilityRule
from ivcontrast.worker.jobs import CHECK, CheckSeries
from ivcontrast.worker.retention import EVENT_PRUNED, prune_once
from ivcontrast.worker.service import Worker
from tests.support import dicom_factory

DAYS = 30.0


@pytest.fixture
def db(any_db: Database) -> Database:
    return any_db


@dataclass
class Spooled:
    uid: str
    paths: list[Path]


def spool_series(db: Database, spool: Path, datasets: list[Dataset], folder: Path) -> Spooled:
    """Lay ``datasets`` out in ``spool`` as the listener does, and index them."""
    paths = []
    for written in dicom_factory.write_files(datasets, folder):
        ds, syntax = read_file_header(written)
        relative = relative_path(
            str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
        )
        target = spool / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        written.rename(target)
        data = target.read_bytes()
        record_instance(
            db,
            instance_header(ds, syntax),
            StoredFile(relative, len(data), hashlib.sha256(data).hexdigest()),
            None,
        )
        paths.append(target)
    return Spooled(str(datasets[0].SeriesInstanceUID), paths)


def finish(db: Database, uid: str, state: SeriesState, received: datetime) -> None:
    """The series as the pipeline leaves it, its files last written at ``received``."""
    with db.write() as session:
        session.execute(
            update(Series)
            .where(Series.series_uid == uid)
            .values(state=state, last_received_at=received, completed_at=received)
        )


def age_files(paths: list[Path], when: datetime) -> None:
    for path in paths:
        os.utime(path, (when.timestamp(), when.timestamp()))


def series_row(db: Database, uid: str) -> tuple[str, int, int]:
    with db.session() as session:
        series = session.scalars(select(Series).where(Series.series_uid == uid)).one()
        rows = len(session.scalars(select(Instance).where(Instance.series_id == series.id)).all())
        return series.state, series.version, rows


def test_finished_series_lose_their_files_after_the_retention_and_keep_their_results(
    db: Database, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    now = utcnow()
    old, recent = now - timedelta(days=DAYS + 1), now - timedelta(days=DAYS - 1)
    cases = {
        "classified-old": (SeriesState.CLASSIFIED, old),
        "skipped-old": (SeriesState.SKIPPED, old),
        "failed-old": (SeriesState.FAILED, old),  # kept for an operator to retry
        "classified-recent": (SeriesState.CLASSIFIED, recent),
        "receiving-old": (SeriesState.RECEIVING, old),
    }
    spooled = {}
    for name, (state, when) in cases.items():
        spooled[name] = s = spool_series(
            db, spool, dicom_factory.ct_series(3, rows=8, columns=8), tmp_path / name
        )
        finish(db, s.uid, state, when)
        age_files(s.paths, when)
    # A write-back still waiting for its retry needs the files of an old classified series.
    waiting = spool_series(db, spool, dicom_factory.ct_series(2, rows=8, columns=8), tmp_path / "w")
    finish(db, waiting.uid, SeriesState.CLASSIFIED, old)
    age_files(waiting.paths, old)
    with db.write() as session:
        series_id = session.scalar(select(Series.id).where(Series.series_uid == waiting.uid))
        enqueue(session, "writeback", series_id, 1, key="writeback:pacs")

    pruned = prune_once(db, spool, DAYS, now=now)

    assert sorted(p.series_uid for p in pruned) == sorted(
        spooled[n].uid for n in ("classified-old", "skipped-old")
    )
    assert all(p.files == 3 and p.bytes > 0 for p in pruned)
    for name, s in spooled.items():
        gone = name in ("classified-old", "skipped-old")
        assert all(p.exists() != gone for p in s.paths), name
        assert series_row(db, s.uid)[2] == (0 if gone else 3), name
        assert series_row(db, s.uid)[0] == cases[name][0], name  # states unchanged
        if gone:  # the series and study folders went with the files
            assert not s.paths[0].parent.exists() and not s.paths[0].parent.parent.exists()
    assert all(p.exists() for p in waiting.paths)
    with db.session() as session:
        events = session.scalars(select(Event).where(Event.kind == EVENT_PRUNED)).all()
        assert sorted(e.series_uid for e in events) == sorted(p.series_uid for p in pruned)
        assert all("3 spooled files" in (e.detail or "") for e in events)
    # Nothing left to do: a second pass removes nothing.
    assert prune_once(db, spool, DAYS, now=now) == []


def test_a_series_re_sent_after_pruning_is_received_and_classified_again(
    db: Database, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    now = utcnow()
    old = now - timedelta(days=DAYS + 5)
    datasets = dicom_factory.ct_series(3, rows=8, columns=8)
    first = spool_series(db, spool, datasets, tmp_path / "first")
    finish(db, first.uid, SeriesState.CLASSIFIED, old)
    age_files(first.paths, old)
    # One instance is re-sent (same SOP Instance UID, same path) just before the pruning pass:
    # its fresh file must survive, and the listener's record re-opens the series.
    resent = dicom_factory.write_files([datasets[0]], tmp_path / "resent")[0]
    resent.replace(first.paths[0])

    (pruned,) = prune_once(db, spool, DAYS, now=now)

    assert pruned.files == 2
    assert first.paths[0].exists() and not first.paths[1].exists()
    spool_series(db, spool, datasets, tmp_path / "again")  # the PACS sends the series again
    state, version, rows = series_row(db, first.uid)
    assert (state, version, rows) == (SeriesState.RECEIVING, 2, 3)


def test_the_worker_prunes_when_retention_is_set_and_never_when_it_is_not(
    db: Database, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    old = utcnow() - timedelta(days=DAYS + 1)
    s = spool_series(db, spool, dicom_factory.ct_series(3, rows=8, columns=8), tmp_path / "s")
    finish(db, s.uid, SeriesState.SKIPPED, old)
    age_files(s.paths, old)

    def run(days: float) -> None:
        settings = load_settings(
            env={},
            overrides={"spool_dir": str(spool), "worker.spool_retention_days": days},
        )
        rule = EligibilityRule(settings.worker.min_slices, settings.worker.classify_derived)
        handlers = {CHECK: CheckSeries(db, rule, settings.worker.max_attempts)}
        Worker(settings, db, handlers).run_until_idle()

    run(0.0)
    assert all(p.exists() for p in s.paths)
    run(DAYS)
    assert not any(p.exists() for p in s.paths)
    with db.session() as session:
        assert session.scalars(select(Job).where(Job.state == JobState.PENDING)).all() == []
