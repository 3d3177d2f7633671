"""The results query behind ``ivcontrast results``: filters over result rows, newest first.

The filters mean what the web API's results filters mean (``web.queries.ResultFilter``):
times bound ``Result.created_at`` (from ``since`` on, before ``until``), and by default only
each series' newest result version is listed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session

from ivcontrast.store.models import Result, Series, Study


@dataclass(frozen=True)
class ResultQuery:
    label: str | None = None  # contrast or no_contrast
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


def _select(query: ResultQuery) -> Select[Result, Series, Study]:
    stmt = (
        select(Result, Series, Study)
        .join(Series, Result.series_id == Series.id)
        .join(Study, Series.study_id == Study.id)
    )
    if not query.all_versions:
        newest = (
            select(Result.series_id, func.max(Result.series_version).label("version"))
            .group_by(Result.series_id)
            .subquery("newest")
        )
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
    for column, value in equal:
        if value is not None:
            stmt = stmt.where(column == value)
    if query.since is not None:
        stmt = stmt.where(Result.created_at >= query.since)
    if query.until is not None:
        stmt = stmt.where(Result.created_at < query.until)
    stmt = stmt.order_by(Result.created_at.desc(), Result.id.desc())
    if query.limit:
        stmt = stmt.limit(query.limit)
    return stmt


def find_results(session: Session, query: ResultQuery, batch: int = 500) -> Iterator[ResultRow]:
    """Result rows matching ``query`` with their series and study, newest first."""
    for result, series, study in session.execute(_select(query).execution_options(yield_per=batch)):
        yield ResultRow(result, series, study)
