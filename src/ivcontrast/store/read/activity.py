"""What the node did: associations, jobs, write-backs, audit events and workers, newest first.

Pages return ``(total, rows)``: the number matching the filters over all pages, and the
rows of one page (``limit`` None: every row from ``offset`` on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from ivcontrast.store.models import Association, Event, Job, Series, Study, Worker, Writeback

S = TypeVar("S", bound=Select[*tuple[Any, ...]])


@dataclass(frozen=True)
class WritebackFilter:
    states: Sequence[str] = ()  # of the job: pending, leased, done, failed
    destination: str | None = None
    series_uid: str | None = None  # of the original series


@dataclass(frozen=True)
class WritebackRow:
    job: Job  # the queue state and attempts
    writeback: Writeback  # what was sent where, and how the last attempt went
    series_uid: str
    study_uid: str


def _page(stmt: S, limit: int | None, offset: int) -> S:
    stmt = stmt.offset(offset)
    return stmt if limit is None else stmt.limit(limit)


def associations_page(
    session: Session,
    states: Sequence[str],
    calling_ae: str | None,
    limit: int | None,
    offset: int = 0,
) -> tuple[int, list[Association]]:
    """DICOM associations, accepted and rejected, newest first."""
    conditions: list[ColumnElement[bool]] = []
    if states:
        conditions.append(Association.state.in_(list(states)))
    if calling_ae is not None:
        conditions.append(Association.calling_ae == calling_ae)
    total = session.scalar(select(func.count(Association.id)).where(*conditions)) or 0
    query = (
        select(Association)
        .where(*conditions)
        .order_by(Association.started_at.desc(), Association.id)
    )
    return total, list(session.scalars(_page(query, limit, offset)))


def jobs_page(
    session: Session,
    kinds: Sequence[str],
    states: Sequence[str],
    series_uid: str | None,
    limit: int | None,
    offset: int = 0,
) -> tuple[int, list[tuple[Job, str]]]:
    """Jobs with their series UID, newest first."""
    conditions: list[ColumnElement[bool]] = []
    if kinds:
        conditions.append(Job.kind.in_(list(kinds)))
    if states:
        conditions.append(Job.state.in_(list(states)))
    if series_uid is not None:
        conditions.append(Series.series_uid == series_uid)
    base = select(func.count(Job.id)).join(Series, Job.series_id == Series.id)
    total = session.scalar(base.where(*conditions)) or 0
    query = (
        select(Job, Series.series_uid)
        .join(Series, Job.series_id == Series.id)
        .where(*conditions)
        .order_by(Job.id.desc())
    )
    return total, [(job, uid) for job, uid in session.execute(_page(query, limit, offset))]


def writebacks_page(
    session: Session, filt: WritebackFilter, limit: int | None, offset: int = 0
) -> tuple[int, list[WritebackRow]]:
    """Write-back jobs (one destination, one result version each) with what they sent,
    newest first."""
    conditions: list[ColumnElement[bool]] = []
    if filt.states:
        conditions.append(Job.state.in_(list(filt.states)))
    if filt.destination is not None:
        conditions.append(Writeback.destination == filt.destination)
    if filt.series_uid is not None:
        conditions.append(Series.series_uid == filt.series_uid)

    def over(*columns: Any) -> Select[Any]:
        return (
            select(*columns)
            .select_from(Job)
            .join(Writeback, Writeback.job_id == Job.id)
            .join(Series, Series.id == Job.series_id)
            .join(Study, Study.id == Series.study_id)
            .where(*conditions)
        )

    total = session.scalar(over(func.count(Job.id))) or 0
    query = over(Job, Writeback, Series.series_uid, Study.study_uid).order_by(Job.id.desc())
    rows = [WritebackRow(*row) for row in session.execute(_page(query, limit, offset))]
    return total, rows


def events_page(
    session: Session,
    kinds: Sequence[str],
    series_uid: str | None,
    association_id: str | None,
    limit: int | None,
    offset: int = 0,
) -> tuple[int, list[Event]]:
    """Audit events (re-sent instances, re-opened series, rejections), newest first."""
    conditions: list[ColumnElement[bool]] = []
    if kinds:
        conditions.append(Event.kind.in_(list(kinds)))
    if series_uid is not None:
        conditions.append(Event.series_uid == series_uid)
    if association_id is not None:
        conditions.append(Event.association_id == association_id)
    total = session.scalar(select(func.count(Event.id)).where(*conditions)) or 0
    query = select(Event).where(*conditions).order_by(Event.at.desc(), Event.id.desc())
    return total, list(session.scalars(_page(query, limit, offset)))


def workers(session: Session, include_stopped: bool = False) -> list[Worker]:
    """Worker processes (running ones unless ``include_stopped``), newest heartbeat first."""
    query = select(Worker).order_by(Worker.heartbeat_at.desc())
    if not include_stopped:
        query = query.where(Worker.stopped_at.is_(None))
    return list(session.scalars(query))
