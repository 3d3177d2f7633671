"""``/jobs`` (the queue, filterable by state and kind) and ``/associations`` (with the newest
audit events)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from ivcontrast.store import read
from ivcontrast.store.models import JobState
from ivcontrast.web import schemas as s
from ivcontrast.web.deps import Context
from ivcontrast.web.pages.render import MAX_PAGE, PAGE_SIZE, Page, choice, pager

router = APIRouter(include_in_schema=False)
JOB_STATES = [str(x) for x in JobState]


@router.get("/jobs", response_class=HTMLResponse)
def jobs(
    ctx: Context,
    page: Page,
    state: str = "",
    kind: Annotated[str, Query(max_length=32)] = "",
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1,
) -> Response:
    offset = (page_number - 1) * PAGE_SIZE
    with ctx.db.session() as session:
        kinds = sorted({k for k, _ in read.summary(session).jobs_by_kind_state})
        f = {"state": choice(state, JOB_STATES), "kind": choice(kind, kinds)}
        total, rows = read.jobs_page(
            session,
            [f["kind"]] if f["kind"] else [],
            [f["state"]] if f["state"] else [],
            None,
            PAGE_SIZE,
            offset,
        )
        items = [s.job_out(j, uid) for j, uid in rows]
    return page(
        "jobs.html", items=items, kinds=kinds, f=f, **pager(page.request, page_number, total)
    )


@router.get("/associations", response_class=HTMLResponse)
def associations(
    ctx: Context,
    page: Page,
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1,
) -> Response:
    offset = (page_number - 1) * PAGE_SIZE
    with ctx.db.session() as session:
        total, rows = read.associations_page(session, [], None, PAGE_SIZE, offset)
        events_total, events = read.events_page(session, [], None, None, 25, 0)
        items = [s.association_out(a) for a in rows]
        event_items = [s.event_out(e) for e in events]
    return page(
        "associations.html",
        items=items,
        events=event_items,
        events_total=events_total,
        **pager(page.request, page_number, total),
    )
