"""``/series`` (the filterable list) and ``/series/{uid}`` (one series: the call, its
per-slice curve, thumbnails, instances, associations, jobs and write-backs)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from ivcontrast.store import read
from ivcontrast.vocabulary import Label, TagStatus
from ivcontrast.web import plot
from ivcontrast.web import schemas as s
from ivcontrast.web.deps import Context
from ivcontrast.web.pages.render import (
    MAX_PAGE,
    PAGE_SIZE,
    STATE_ORDER,
    Page,
    choice,
    form_date,
    pager,
)

router = APIRouter(include_in_schema=False)
LABELS = [str(x) for x in Label]
TAG_STATUSES = [str(x) for x in TagStatus]


@router.get("/series", response_class=HTMLResponse)
def series_list(
    ctx: Context,
    page: Page,
    state: str = "",
    label: str = "",
    tag_status: str = "",
    uid: Annotated[str, Query(max_length=64)] = "",
    accession: Annotated[str, Query(max_length=16)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1,
) -> Response:
    # A filter form sends every field, empty ones included; unknown values mean "any".
    f = {
        "state": choice(state, STATE_ORDER),
        "label": choice(label, LABELS),
        "tag_status": choice(tag_status, TAG_STATUSES),
        "uid": uid.strip() if uid.isprintable() else "",
        "accession": accession.strip() if accession.isprintable() else "",
        "since": since if form_date(since) else "",
        "until": until if form_date(until) else "",
    }
    until_day = form_date(until)
    filt = read.SeriesFilter(
        states=[f["state"]] if f["state"] else [],
        label=f["label"] or None,
        tag_status=f["tag_status"] or None,
        since=form_date(since),
        until=until_day + timedelta(days=1) if until_day else None,  # "to" is inclusive
        series_uid=f["uid"] or None,
        accession=f["accession"] or None,
    )
    offset = (page_number - 1) * PAGE_SIZE
    with ctx.db.session() as session:
        total, rows = read.series_page(session, filt, PAGE_SIZE, offset)
        if f["uid"] and total == 0:  # one box takes a series or a study UID
            filt = replace(filt, series_uid=None, study_uid=f["uid"])
            total, rows = read.series_page(session, filt, PAGE_SIZE, offset)
        items = [s.series_summary(r.series, r.study, r.result, ctx.show_patient) for r in rows]
    export = {k: f[k] for k in ("label", "tag_status", "accession") if f[k]}
    return page(
        "series_list.html",
        items=items,
        export_query=urlencode(export),
        f=f,
        **pager(page.request, page_number, total),
    )


@router.get("/series/{series_uid}", response_class=HTMLResponse)
def series_page(ctx: Context, page: Page, series_uid: str) -> Response:
    view = ctx.series_view(series_uid) if len(series_uid) <= 64 else None
    if view is None:
        return page("not_found.html", 404, what=f"series {series_uid}")
    detail = view.detail
    result = detail.results[0] if detail.results else None
    curve = None
    thumbs = []
    for t in detail.thumbnails:
        p = _nearest_probability(result, t.z_mm) if result else None
        thumbs.append({"t": t, "p": p})
    if result is not None:
        curve = plot.curve(
            [(pt.z_mm, pt.probability) for pt in result.slice_probabilities],
            result.threshold,
            result.probability,
            [t.z_mm for t in detail.thumbnails],
        )
    direction = None
    if view.normal is not None and abs(view.normal[2]) > 0.7:
        # DICOM patient z grows towards the head.
        direction = ("feet", "head") if view.normal[2] > 0 else ("head", "feet")
    return page(
        "series.html", d=detail, result=result, curve=curve, thumbs=thumbs, direction=direction
    )


def _nearest_probability(result: s.ResultDetail, z: float | None) -> float | None:
    if z is None or not result.slice_probabilities:
        return None
    return min(result.slice_probabilities, key=lambda pt: abs(pt.z_mm - z)).probability
