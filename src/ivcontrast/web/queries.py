"""Read-only queries over the store for the HTTP API, the dashboard and the metrics.

Each function takes an open session and returns plain rows; nothing here writes. "The
result" of a series is its newest result row (highest series version), which may belong to
an older version while a re-opened series waits to be classified again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, select
from sqlalchemy.orm import Session, aliased

from ivcontrast.store.models import (
    Association,
    Event,
    Instance,
    Job,
    Result,
    Series,
    Study,
    Worker,
    Writeback,
)
from ivcontrast.store.results import newest_versions


@dataclass(frozen=True)
class SeriesFilter:
    """Filters of the series list; times bound ``Series.last_received_at``."""

    states: Sequence[str] = ()
    label: str | None = None
    tag_status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    accession: str | None = None
    modality: str | None = None


@dataclass(frozen=True)
class SeriesRow:
    series: Series
    study: Study
    result: Result | None


@dataclass(frozen=True)
class SeriesAssociation:
    association: Association
    instances: int


@dataclass(frozen=True)
class InstanceStats:
    count: int
    bytes: int
    transfer_syntaxes: list[str]
    sop_classes: list[str]
    first_received_at: datetime | None
    last_received_at: datetime | None


@dataclass
class Summary:
    series_by_state: dict[str, int] = field(default_factory=dict)
    results_by_label: dict[str, int] = field(default_factory=dict)
    results_by_tag_status: dict[str, int] = field(default_factory=dict)
    jobs_by_kind_state: dict[tuple[str, str], int] = field(default_factory=dict)
    instances: int = 0
    associations: int = 0


def _series_select(columns: Sequence[Any], latest: Any, filt: SeriesFilter) -> Select[Any]:
    """``columns`` over series, their study and their newest result (``latest``, an alias)."""
    newest = newest_versions()
    query = (
        select(*columns)
        .select_from(Series)
        .join(Study, Series.study_id == Study.id)
        .outerjoin(newest, newest.c.series_id == Series.id)
        .outerjoin(
            latest,
            and_(latest.series_id == Series.id, latest.series_version == newest.c.version),
        )
    )
    if filt.states:
        query = query.where(Series.state.in_(list(filt.states)))
    if filt.label is not None:
        query = query.where(latest.label == filt.label)
    if filt.tag_status is not None:
        query = query.where(latest.tag_status == filt.tag_status)
    if filt.since is not None:
        query = query.where(Series.last_received_at >= filt.since)
    if filt.until is not None:
        query = query.where(Series.last_received_at < filt.until)
    if filt.study_uid is not None:
        query = query.where(Study.study_uid == filt.study_uid)
    if filt.series_uid is not None:
        query = query.where(Series.series_uid == filt.series_uid)
    if filt.accession is not None:
        query = query.where(Study.accession_number == filt.accession)
    if filt.modality is not None:
        query = query.where(Series.modality == filt.modality)
    return query


def series_page(
    session: Session, filt: SeriesFilter, limit: int, offset: int
) -> tuple[int, list[SeriesRow]]:
    """The total matching ``filt`` and one page of series, newest arrivals first."""
    latest = aliased(Result, name="latest")
    total = session.scalar(_series_select([func.count(Series.id)], latest, filt)) or 0
    query = _series_select([Series, Study, latest], latest, filt)
    query = (
        query.order_by(Series.last_received_at.desc(), Series.id.desc()).limit(limit).offset(offset)
    )
    rows = [SeriesRow(s, st, r) for s, st, r in session.execute(query)]
    return total, rows


def series_by_uid(session: Session, series_uid: str) -> SeriesRow | None:
    _, rows = series_page(session, SeriesFilter(series_uid=series_uid), 1, 0)
    return rows[0] if rows else None


def instance_stats(session: Session, series_id: int) -> InstanceStats:
    count, size, first, last = session.execute(
        select(
            func.count(Instance.id),
            func.coalesce(func.sum(Instance.size_bytes), 0),
            func.min(Instance.received_at),
            func.max(Instance.received_at),
        ).where(Instance.series_id == series_id)
    ).one()
    syntaxes = session.scalars(
        select(Instance.transfer_syntax_uid)
        .where(Instance.series_id == series_id)
        .distinct()
        .order_by(Instance.transfer_syntax_uid)
    ).all()
    classes = session.scalars(
        select(Instance.sop_class_uid)
        .where(Instance.series_id == series_id)
        .distinct()
        .order_by(Instance.sop_class_uid)
    ).all()
    # min()/max() of a TypeDecorator column come back raw on some backends: normalise.
    return InstanceStats(
        count=int(count),
        bytes=int(size),
        transfer_syntaxes=list(syntaxes),
        sop_classes=list(classes),
        first_received_at=_aware(first),
        last_received_at=_aware(last),
    )


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def series_instances(session: Session, series_id: int) -> list[Instance]:
    return list(
        session.scalars(
            select(Instance).where(Instance.series_id == series_id).order_by(Instance.id)
        )
    )


def series_associations(session: Session, series_id: int) -> list[SeriesAssociation]:
    query = (
        select(Association, func.count(Instance.id))
        .join(Instance, Instance.association_id == Association.id)
        .where(Instance.series_id == series_id)
        .group_by(Association.id)
        .order_by(Association.started_at)
    )
    return [SeriesAssociation(a, int(n)) for a, n in session.execute(query)]


def series_jobs(session: Session, series_id: int) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.series_id == series_id).order_by(Job.id)))


def series_writebacks(session: Session, series_id: int) -> list[Writeback]:
    return list(
        session.scalars(
            select(Writeback).where(Writeback.series_id == series_id).order_by(Writeback.id)
        )
    )


def series_results(session: Session, series_id: int) -> list[Result]:
    return list(
        session.scalars(
            select(Result)
            .where(Result.series_id == series_id)
            .order_by(Result.series_version.desc(), Result.id.desc())
        )
    )


def associations_page(
    session: Session, states: Sequence[str], calling_ae: str | None, limit: int, offset: int
) -> tuple[int, list[Association]]:
    conditions: list[ColumnElement[bool]] = []
    if states:
        conditions.append(Association.state.in_(list(states)))
    if calling_ae is not None:
        conditions.append(Association.calling_ae == calling_ae)
    total = session.scalar(select(func.count(Association.id)).where(*conditions)) or 0
    rows = session.scalars(
        select(Association)
        .where(*conditions)
        .order_by(Association.started_at.desc(), Association.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return total, list(rows)


def jobs_page(
    session: Session,
    kinds: Sequence[str],
    states: Sequence[str],
    series_uid: str | None,
    limit: int,
    offset: int,
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
        .limit(limit)
        .offset(offset)
    )
    return total, [(job, uid) for job, uid in session.execute(query)]


def events_page(
    session: Session,
    kinds: Sequence[str],
    series_uid: str | None,
    association_id: str | None,
    limit: int,
    offset: int,
) -> tuple[int, list[Event]]:
    conditions: list[ColumnElement[bool]] = []
    if kinds:
        conditions.append(Event.kind.in_(list(kinds)))
    if series_uid is not None:
        conditions.append(Event.series_uid == series_uid)
    if association_id is not None:
        conditions.append(Event.association_id == association_id)
    total = session.scalar(select(func.count(Event.id)).where(*conditions)) or 0
    rows = session.scalars(
        select(Event)
        .where(*conditions)
        .order_by(Event.at.desc(), Event.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return total, list(rows)


def summary(session: Session) -> Summary:
    """Counts for the dashboard: series by state, newest results by label and tag status."""
    out = Summary()
    for state, n in session.execute(select(Series.state, func.count()).group_by(Series.state)):
        out.series_by_state[state] = int(n)
    newest = newest_versions()
    latest = (
        select(Result.label, Result.tag_status, func.count())
        .join(
            newest,
            and_(newest.c.series_id == Result.series_id, newest.c.version == Result.series_version),
        )
        .group_by(Result.label, Result.tag_status)
    )
    for label, tag_status, n in session.execute(latest):
        out.results_by_label[label] = out.results_by_label.get(label, 0) + int(n)
        out.results_by_tag_status[tag_status] = out.results_by_tag_status.get(tag_status, 0) + int(
            n
        )
    for kind, state, n in session.execute(
        select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
    ):
        out.jobs_by_kind_state[(kind, state)] = int(n)
    out.instances = session.scalar(select(func.count(Instance.id))) or 0
    out.associations = session.scalar(select(func.count(Association.id))) or 0
    return out


def workers(session: Session, include_stopped: bool = False) -> list[Worker]:
    query = select(Worker).order_by(Worker.heartbeat_at.desc())
    if not include_stopped:
        query = query.where(Worker.stopped_at.is_(None))
    return list(session.scalars(query))
