"""What the API and the pages share: settings, the store, and the series detail they show."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fastapi import HTTPException
from sqlalchemy.orm import Session

from ivcontrast.config import Settings
from ivcontrast.store import read
from ivcontrast.store.db import Database
from ivcontrast.store.models import Series
from ivcontrast.web import health
from ivcontrast.web import schemas as s
from ivcontrast.web.thumbnails import (
    Geometry,
    Slice,
    ThumbnailError,
    physics_slice,
    render_marked_png,
    render_png,
    representative,
    resolve,
    sorted_slices,
)

THUMBNAIL_CACHE = 256  # PNGs kept in memory (~20 kB each at the default size)


def thumbnail_url(series_uid: str, index: int) -> str:
    return f"/series/{series_uid}/thumbnails/{index}.png"


def physics_thumbnail_url(series_uid: str) -> str:
    return f"/series/{series_uid}/physics.png"


def _mark(physics: s.PhysicsOut | None) -> tuple[float, float, float] | None:
    """(row, column, radius in mm) of a blood pool the opinion found, else None."""
    if physics is None or not physics.found or physics.row is None or physics.col is None:
        return None
    return physics.row, physics.col, physics.radius_mm or 0.0


@dataclass
class SeriesView:
    """A series page's data: the API's detail plus the slice geometry."""

    detail: s.SeriesDetail
    normal: tuple[float, float, float] | None


@dataclass
class WebContext:
    settings: Settings
    db: Database
    _render: Callable[[str, str, int], bytes] = field(init=False, repr=False)
    _render_marked: Callable[[str, str, int, tuple[float, float, float]], bytes] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        # Keyed by path and content hash: a re-sent instance with new bytes renders afresh.
        @functools.lru_cache(maxsize=THUMBNAIL_CACHE)
        def render(path: str, sha256: str, size: int) -> bytes:
            return render_png(Path(path), size)

        # ... and by the mark (row, column, radius): a new result may circle elsewhere.
        @functools.lru_cache(maxsize=THUMBNAIL_CACHE // 4)
        def render_marked(
            path: str, sha256: str, size: int, mark: tuple[float, float, float]
        ) -> bytes:
            return render_marked_png(Path(path), size, *mark)

        self._render = render
        self._render_marked = render_marked

    @functools.cached_property
    def model_notice(self) -> str | None:
        """Read once: the package is the workers' too, and they load it once at start."""
        return health.model_notice(self.settings)

    @property
    def show_patient(self) -> bool:
        return self.settings.web.show_patient_names

    def _geometry(self, session: Session, series: Series) -> tuple[Geometry, list[Slice]]:
        geometry = sorted_slices(read.series_instances(session, series.id))
        return geometry, representative(geometry.slices, self.settings.web.thumbnails)

    def series_view(self, series_uid: str) -> SeriesView | None:
        with self.db.session() as session:
            row = read.series_by_uid(session, series_uid)
            if row is None:
                return None
            series = row.series
            geometry, chosen = self._geometry(session, series)
            summary = s.series_summary(series, row.study, row.result, self.show_patient)
            detail = s.SeriesDetail(
                **summary.model_dump(),
                instance_stats=s.instances_out(read.instance_stats(session, series.id)),
                associations=[
                    s.series_association_out(a)
                    for a in read.series_associations(session, series.id)
                ],
                jobs=[
                    s.job_out(j, series.series_uid) for j in read.series_jobs(session, series.id)
                ],
                writebacks=[s.writeback_out(w) for w in read.series_writebacks(session, series.id)],
                results=[
                    s.result_detail(r, series) for r in read.series_results(session, series.id)
                ],
                thumbnails=[
                    s.ThumbnailOut(
                        index=k,
                        sop_instance_uid=sl.sop_instance_uid,
                        instance_number=sl.instance_number,
                        z_mm=sl.z_mm,
                        url=thumbnail_url(series.series_uid, k),
                    )
                    for k, sl in enumerate(chosen)
                ],
                physics_thumbnail=None,
            )
        if detail.results and _mark(detail.results[0].physics) is not None:
            detail.physics_thumbnail = physics_thumbnail_url(series.series_uid)
        return SeriesView(detail, geometry.normal)

    def thumbnail(self, series_uid: str, index: int, size: int) -> tuple[bytes, str]:
        """PNG bytes and an ETag for thumbnail ``index`` of a series; HTTPException if none."""
        with self.db.session() as session:
            row = read.series_by_uid(session, series_uid)
            if row is None:
                raise HTTPException(404, f"series {series_uid} not found")
            _, chosen = self._geometry(session, row.series)
        if not 0 <= index < len(chosen):
            raise HTTPException(404, f"series {series_uid} has no thumbnail {index}")
        chosen_slice = chosen[index]
        try:
            path = resolve(self.settings.spool_path, chosen_slice.path)
            png = self._render(str(path), chosen_slice.sha256, size)
        except ThumbnailError as exc:
            raise HTTPException(422, str(exc)) from None
        return png, f'"{chosen_slice.sha256[:32]}-{size}"'

    def physics_thumbnail(self, series_uid: str, size: int) -> tuple[bytes, str]:
        """PNG bytes and an ETag for the slice where the newest result's physics opinion
        measured the blood pool, circled; HTTPException 404 where it found none."""
        with self.db.session() as session:
            row = read.series_by_uid(session, series_uid)
            if row is None:
                raise HTTPException(404, f"series {series_uid} not found")
            pool = s.physics_out(row.result.physics) if row.result else None
            mark = _mark(pool)
            if pool is None or mark is None:
                raise HTTPException(404, f"series {series_uid} has no blood pool to show")
            geometry = sorted_slices(read.series_instances(session, row.series.id))
        chosen = physics_slice(geometry, pool.z_mm, pool.slice_index)
        if chosen is None:
            raise HTTPException(404, f"series {series_uid}: the blood pool's slice is gone")
        try:
            path = resolve(self.settings.spool_path, chosen.path)
            png = self._render_marked(str(path), chosen.sha256, size, mark)
        except ThumbnailError as exc:
            raise HTTPException(422, str(exc)) from None
        marker = "-".join(f"{v:g}" for v in mark)
        return png, f'"{chosen.sha256[:32]}-{size}-{marker}"'


def utc(value: datetime | None) -> datetime | None:
    """A query time as aware UTC; naive times are taken as UTC.

    A time whose offset pushes it past year 1 or 9999 is clamped there: it bounds nothing.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)
