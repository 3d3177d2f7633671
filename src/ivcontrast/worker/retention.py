"""Spool retention: the received files of finished series are removed after a set time.

A series is finished when it was classified or skipped and no job of it is pending or leased
(a write-back waiting for its retry still needs the files). Its files go
``worker.spool_retention_days`` after its last instance arrived; its results, events and
series row stay, and an event says what was removed. Failed series are kept for an operator
to look at and retry.

Each series is pruned in one write transaction that re-checks those conditions with the series
row locked, so an instance arriving at that moment waits for the transaction and then re-opens
the series as any late instance does (a new version, classified again). Only files named by
the series' instance rows are removed, and only if they were last written before the cut-off:
a file that a sender re-sent a moment ago (same SOP Instance UID, same path) is newer and stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Select, delete, exists, select

from ivcontrast.store.db import Database
from ivcontrast.store.models import Event, Instance, Job, JobState, Series, SeriesState, utcnow

log = logging.getLogger(__name__)

EVENT_PRUNED = "pruned"
FINISHED = (SeriesState.CLASSIFIED, SeriesState.SKIPPED)
ACTIVE_JOBS = (JobState.PENDING, JobState.LEASED)


@dataclass(frozen=True)
class Pruned:
    series_uid: str
    files: int
    bytes: int


def prune_once(
    db: Database, spool: Path, retention_days: float, now: datetime | None = None, limit: int = 100
) -> list[Pruned]:
    """Remove the spooled files of up to ``limit`` finished series older than the retention."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    with db.session() as session:
        ids = session.scalars(_due(cutoff).order_by(Series.last_received_at).limit(limit)).all()
    pruned = []
    for series_id in ids:
        done = _prune_series(db, spool, series_id, cutoff, retention_days)
        if done is not None:
            pruned.append(done)
    return pruned


def _due(cutoff: datetime) -> Select[int]:
    return select(Series.id).where(
        Series.state.in_(FINISHED),
        Series.last_received_at < cutoff,
        exists().where(Instance.series_id == Series.id),
        ~exists().where(Job.series_id == Series.id, Job.state.in_(ACTIVE_JOBS)),
    )


def _prune_series(
    db: Database, spool: Path, series_id: int, cutoff: datetime, retention_days: float
) -> Pruned | None:
    with db.write() as session:
        series = session.scalar(select(Series).where(Series.id == series_id).with_for_update())
        if series is None or session.scalar(_due(cutoff).where(Series.id == series_id)) is None:
            return None  # changed since it was found: a late instance, a retry
        rows = session.execute(
            select(Instance.path, Instance.size_bytes).where(Instance.series_id == series_id)
        ).all()
        files, size, kept = 0, 0, 0
        for relative, size_bytes in rows:
            path = spool / relative
            try:
                if path.stat().st_mtime >= cutoff.timestamp():
                    kept += 1  # re-sent just now: the listener is about to index it again
                    continue
                path.unlink()
            except FileNotFoundError:
                pass
            files += 1
            size += int(size_bytes or 0)
        session.execute(delete(Instance).where(Instance.series_id == series_id))
        series.instance_count = 0  # the rows are gone; the event keeps the figures
        detail = (
            f"{files} spooled files ({size / 1e6:.1f} MB) removed after {retention_days:g} days"
        )
        if kept:
            detail += f"; {kept} re-sent since then kept"
        session.add(Event(kind=EVENT_PRUNED, series_uid=series.series_uid, detail=detail))
        uid = series.series_uid
        folders = {(spool / relative).parent for relative, _ in rows}
    for folder in folders:
        _remove_if_empty(folder, spool)
    log.info("retention: %s: %s", uid, detail, extra={"series_uid": uid})
    return Pruned(uid, files, size)


def _remove_if_empty(folder: Path, spool: Path) -> None:
    """The series folder, then its study folder, if nothing else is in them."""
    for path in (folder, folder.parent):
        if path == spool or spool not in path.parents:
            return
        try:
            path.rmdir()
        except OSError:
            return  # not empty (another series, a file arriving), or already gone
