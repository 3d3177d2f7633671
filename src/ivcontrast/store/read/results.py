"""The results query and its row shape: ``ivcontrast results``, ``/api/results``, the export.

Times bound ``Result.created_at`` (from ``since`` on, before ``until``), and by default only
each series' newest result version is listed. ``newest_versions`` is also what "the result of
a series" means for the series list and the summary counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Subquery, and_, func, select
from sqlalchemy.orm import Session

from ivcontrast.store.models import Result, Series, Study


@dataclass(frozen=True)
class ResultQuery:
    label: str | None = None  # contrast, no_contrast or review
    tag_status: str | None = None  # missing, agrees or disagrees
    since: datetime | None = None
    until: datetime | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    accession: str | None = None
    all_versions: bool = False
    limit: int | None = None


@dataclass(frozen=True)
class ResultRow:
    result: Result
    series: Series
    study: Study


def newest_versions() -> Subquery:
    """series_id -> the highest series version that has a result."""
    return (
        select(Result.series_id, func.max(Result.series_version).label("version"))
        .group_by(Result.series_id)
        .subquery("newest")
    )


def results_select(columns: Sequence[Any], query: ResultQuery) -> Select[Any]:
    """``columns`` over the results matching ``query`` (no order, no limit)."""
    stmt = (
        select(*columns)
        .select_from(Result)
        .join(Series, Result.series_id == Series.id)
        .join(Study, Series.study_id == Study.id)
    )
    if not query.all_versions:
        newest = newest_versions()
        stmt = stmt.join(
            newest,
            and_(newest.c.series_id == Result.series_id, newest.c.version == Result.series_version),
        )
    equal = [
        (Result.label, query.label),
        (Result.tag_status, query.tag_status),
        (Study.study_uid, query.study_uid),
        (Series.series_uid, query.series_uid),
        (Study.accession_number, query.accession),
    ]
    return filtered(stmt, equal, Result.created_at, query.since, query.until)


def filtered(
    stmt: Select[Any],
    equal: Sequence[tuple[Any, Any]],
    when: Any,
    since: datetime | None,
    until: datetime | None,
) -> Select[Any]:
    """``stmt`` where each (column, value) with a value matches, and ``when`` lies in
    [since, until): the filters the results and the series lists share."""
    for column, value in equal:
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(when >= since)
    if until is not None:
        stmt = stmt.where(when < until)
    return stmt


def _rows(query: ResultQuery) -> Select[Any]:
    return results_select([Result, Series, Study], query).order_by(
        Result.created_at.desc(), Result.id.desc()
    )


def find_results(session: Session, query: ResultQuery, batch: int = 500) -> Iterator[ResultRow]:
    """Result rows matching ``query`` with their series and study, newest first, read
    ``batch`` rows at a time (at most ``query.limit``)."""
    stmt = _rows(query)
    if query.limit:
        stmt = stmt.limit(query.limit)
    for result, series, study in session.execute(stmt.execution_options(yield_per=batch)):
        yield ResultRow(result, series, study)


def results_page(
    session: Session, query: ResultQuery, limit: int, offset: int = 0
) -> tuple[int, list[ResultRow]]:
    """The number of results matching ``query`` and one page of them, newest first."""
    total = session.scalar(results_select([func.count(Result.id)], query)) or 0
    rows = session.execute(_rows(query).limit(limit).offset(offset))
    return total, [ResultRow(r, s, st) for r, s, st in rows]
