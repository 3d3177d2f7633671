"""Series with their newest result, and what one series page shows: its instances,
associations, jobs, write-backs and every result version.

"The result" of a series is its newest result row (highest series version), which may belong
to an older version while a re-opened series waits to be classified again. The list is
ordered by the time a series last received an instance, newest first, for the CLI
(``ivcontrast series``), the API (``/api/series``) and the dashboard alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session, aliased

from ivcontrast.store.models import Association, Instance, Job, Result, Series, Study, Writeback
from ivcontrast.store.read.results import filtered, newest_versions


@dataclass(frozen=True)
class SeriesFilter:
    """Filters of the series list; times bound ``Series.last_received_at``."""

    states: Sequence[str] = ()
    label: str | None = None  # of the newest result
    tag_status: str | None = None  # of the newest result
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
    result: Result | None  # the newest result, None before the first


@dataclass(frozen=True)
class SeriesAssociation:
    association: Association
    instances: int  # of this series, delivered by this association


@dataclass(frozen=True)
class InstanceStats:
    count: int
    bytes: int
    transfer_syntaxes: list[str]
    sop_classes: list[str]
    first_received_at: datetime | None
    last_received_at: datetime | None


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
    equal = [
        (latest.label, filt.label),
        (latest.tag_status, filt.tag_status),
        (Study.study_uid, filt.study_uid),
        (Series.series_uid, filt.series_uid),
        (Study.accession_number, filt.accession),
        (Series.modality, filt.modality),
    ]
    return filtered(query, equal, Series.last_received_at, filt.since, filt.until)


def series_page(
    session: Session, filt: SeriesFilter, limit: int | None, offset: int = 0
) -> tuple[int, list[SeriesRow]]:
    """The total matching ``filt`` and one page of series, newest arrivals first
    (``limit`` None: every series from ``offset`` on)."""
    latest = aliased(Result, name="latest")
    total = session.scalar(_series_select([func.count(Series.id)], latest, filt)) or 0
    query = _series_select([Series, Study, latest], latest, filt)
    query = query.order_by(Series.last_received_at.desc(), Series.id.desc()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    rows = [SeriesRow(s, st, r) for s, st, r in session.execute(query)]
    return total, rows


def series_by_uid(session: Session, series_uid: str) -> SeriesRow | None:
    _, rows = series_page(session, SeriesFilter(series_uid=series_uid), 1, 0)
    return rows[0] if rows else None


def series_count(session: Session) -> int:
    return session.scalar(select(func.count(Series.id))) or 0


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
    """Every result version of a series, newest first."""
    return list(
        session.scalars(
            select(Result)
            .where(Result.series_id == series_id)
            .order_by(Result.series_version.desc(), Result.id.desc())
        )
    )
