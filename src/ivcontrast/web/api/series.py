"""``/api/series`` (the list and one series' detail), the series thumbnails, and the slice of
the blood pool that the physics opinion measured, circled."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response

from ivcontrast.store import read
from ivcontrast.store.models import SeriesState
from ivcontrast.vocabulary import TagStatus
from ivcontrast.web import schemas as s
from ivcontrast.web.context import utc
from ivcontrast.web.deps import (
    NOT_FOUND,
    TEXT_PATTERN,
    Accession,
    Context,
    ErrorOut,
    LabelParam,
    Limit,
    Offset,
    Since,
    UidPath,
    UidQuery,
    Until,
    strict_query,
)

router = APIRouter(dependencies=[Depends(strict_query)], tags=["series"])


@router.get("/api/series", response_model=s.Page[s.SeriesSummary])
def list_series(
    ctx: Context,
    state: Annotated[list[SeriesState] | None, Query(description="repeatable")] = None,
    label: Annotated[LabelParam | None, Query(description="label of the newest result")] = None,
    tag_status: Annotated[
        TagStatus | None, Query(description="disagrees: the DICOM tag contradicts the call")
    ] = None,
    since: Since = None,
    until: Until = None,
    study_uid: UidQuery = None,
    series_uid: UidQuery = None,
    accession: Accession = None,
    modality: Annotated[str | None, Query(max_length=16, pattern=TEXT_PATTERN)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> s.Page[s.SeriesSummary]:
    """Series with their state and newest result, newest arrivals first.

    ``since``/``until`` bound the time the series last received an instance.
    """
    filt = read.SeriesFilter(
        states=[str(x) for x in state or []],
        label=label,
        tag_status=tag_status,
        since=utc(since),
        until=utc(until),
        study_uid=study_uid,
        series_uid=series_uid,
        accession=accession,
        modality=modality,
    )
    with ctx.db.session() as session:
        total, rows = read.series_page(session, filt, limit, offset)
        items = [s.series_summary(r.series, r.study, r.result, ctx.show_patient) for r in rows]
    return s.Page[s.SeriesSummary](total=total, limit=limit, offset=offset, items=items)


@router.get("/api/series/{series_uid}", response_model=s.SeriesDetail, responses=NOT_FOUND)
def get_series(ctx: Context, series_uid: UidPath) -> s.SeriesDetail:
    """One series: instances, associations, jobs, every result with per-slice probabilities."""
    view = ctx.series_view(series_uid)
    if view is None:
        raise HTTPException(404, f"series {series_uid} not found")
    return view.detail


@router.get(
    "/series/{series_uid}/thumbnails/{index}.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "PNG, soft-tissue window"},
        404: {"model": ErrorOut, "description": "no such series or thumbnail"},
        422: {"model": ErrorOut, "description": "the slice cannot be decoded"},
    },
)
def thumbnail(
    ctx: Context,
    request: Request,
    series_uid: UidPath,
    index: Annotated[int, Path(ge=0, le=1000)],
    size: Annotated[int, Query(ge=32, le=1024, description="longest side in pixels")] = 192,
) -> Response:
    """Representative slice ``index`` (0 = the lowest z) in a soft-tissue window (W400/L40)."""
    png, etag = ctx.thumbnail(series_uid, index, size)
    return _png_response(request, png, etag)


@router.get(
    "/series/{series_uid}/physics.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "PNG, soft-tissue window, circled"},
        404: {"model": ErrorOut, "description": "no such series, or no blood pool found"},
        422: {"model": ErrorOut, "description": "the slice cannot be decoded"},
    },
)
def physics_thumbnail(
    ctx: Context,
    request: Request,
    series_uid: UidPath,
    size: Annotated[int, Query(ge=32, le=1024, description="longest side in pixels")] = 256,
) -> Response:
    """The slice where the newest result's physics opinion measured the blood pool, with the
    blood pool circled (its centre and radius), in the soft-tissue window (W400/L40)."""
    png, etag = ctx.physics_thumbnail(series_uid, size)
    return _png_response(request, png, etag)


def _png_response(request: Request, png: bytes, etag: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": "private, max-age=3600"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(png, media_type="image/png", headers=headers)
