"""The dashboard: server-rendered pages (Jinja2), a little vanilla JS, inline SVG.

Everything the pages need is served by this app; nothing is fetched from the internet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from ivcontrast import __version__
from ivcontrast.classifier.tags import tag_says_contrast
from ivcontrast.store import read
from ivcontrast.store.models import JobState, SeriesState, utcnow
from ivcontrast.vocabulary import Label, TagStatus
from ivcontrast.web import health as health_checks
from ivcontrast.web import plot
from ivcontrast.web import schemas as s
from ivcontrast.web.api import MAX_OFFSET
from ivcontrast.web.auth import COOKIE, safe_next, session_value, token_matches
from ivcontrast.web.context import WebContext

PAGE_SIZE = 50
MAX_LOGIN_BODY = 4096  # a token and a local path; anything longer is not a sign-in
MAX_PAGE = MAX_OFFSET // PAGE_SIZE
STATE_ORDER = [str(x) for x in SeriesState]
JOB_STATES = [str(x) for x in JobState]
TAG_STATUSES = [str(x) for x in TagStatus]
LABELS = [str(x) for x in Label]


def templates_dir() -> Path:
    return Path(str(resources.files("ivcontrast.web") / "templates"))


def _when(value: datetime | None) -> Markup:
    """A <time> element: UTC on the server, turned into local time by app.js."""
    if value is None:
        return Markup('<span class="muted">—</span>')
    iso = value.isoformat()
    text = value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, text, text)


def _ago(value: datetime | None) -> str:
    if value is None:
        return "—"
    seconds = max(0.0, (utcnow() - value).total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _size(value: float | None) -> str:
    if value is None:
        return "—"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _dicom_date(value: str | None) -> str:
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value or "—"


def _tag_claim(value: str | None) -> str:
    """What a ContrastBolusAgent value claims, read as the results are."""
    claim = tag_says_contrast(value)
    return "missing" if claim is None else ("contrast" if claim else "no contrast")


def _label_text(label: str | None) -> str:
    return {"contrast": "IV contrast", "no_contrast": "No IV contrast"}.get(label or "", "—")


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(templates_dir()))
    env = templates.env
    env.filters.update(
        when=_when,
        ago=_ago,
        size=_size,
        secs=_seconds,
        dicom_date=_dicom_date,
        label_text=_label_text,
        tag_claim=_tag_claim,
    )
    env.globals.update(version=__version__, state_order=STATE_ORDER)
    return templates


def _query(request: Request, **changes: Any) -> str:
    """The current query string with ``changes`` applied (None removes a key)."""
    params = {k: v for k, v in request.query_params.multi_items() if k not in changes}
    params.update({k: v for k, v in changes.items() if v is not None})
    return "?" + urlencode(params) if params else ""


def build_router(ctx: WebContext) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    templates = make_templates()
    show = ctx.show_patient

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        base = {
            "request": request,
            "show_patient": show,
            "token_auth": ctx.settings.web.token is not None,
            "nav": name.removesuffix(".html"),
            "model_notice": ctx.model_notice,
        }
        return templates.TemplateResponse(
            request, name, {**base, **context}, status_code=status_code
        )

    @router.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> Response:
        now = utcnow()
        with ctx.db.session() as session:
            counts = read.summary(session)
            _, recent = read.series_page(session, read.SeriesFilter(), 15, 0)
            disagreements_total, disagreements = read.series_page(
                session, read.SeriesFilter(tag_status=TagStatus.DISAGREES), 10, 0
            )
            failed_series_total, failed_series = read.series_page(
                session, read.SeriesFilter(states=[SeriesState.FAILED]), 10, 0
            )
            failed_jobs_total, failed_jobs = read.jobs_page(
                session, [], [JobState.FAILED], None, 10, 0
            )
            workers = [s.worker_out(w, now) for w in read.workers(session)]
            recent_rows = [s.series_summary(r.series, r.study, r.result, show) for r in recent]
            disagreement_rows = [
                s.series_summary(r.series, r.study, r.result, show) for r in disagreements
            ]
            failed_rows = [
                s.series_summary(r.series, r.study, r.result, show) for r in failed_series
            ]
            failed_job_rows = [s.job_out(j, uid) for j, uid in failed_jobs]
        queue: dict[str, int] = {}
        for (_, state), n in counts.jobs_by_kind_state.items():
            queue[state] = queue.get(state, 0) + n
        return page(
            request,
            "overview.html",
            health=health_checks.health(ctx.settings, ctx.db),
            counts=counts,
            series_total=sum(counts.series_by_state.values()),
            results_total=sum(counts.results_by_label.values()),
            queue=queue,
            recent=recent_rows,
            disagreements=disagreement_rows,
            disagreements_total=disagreements_total,
            failed_series=failed_rows,
            failed_series_total=failed_series_total,
            failed_jobs=failed_job_rows,
            failed_jobs_total=failed_jobs_total,
            workers=workers,
            refresh_seconds=30,
        )

    @router.get("/series", response_class=HTMLResponse)
    def series_list(
        request: Request,
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
            "state": _choice(state, STATE_ORDER),
            "label": _choice(label, LABELS),
            "tag_status": _choice(tag_status, TAG_STATUSES),
            "uid": uid.strip() if _printable(uid) else "",
            "accession": accession.strip() if _printable(accession) else "",
            "since": since if _date(since) else "",
            "until": until if _date(until) else "",
        }
        until_day = _date(until)
        filt = read.SeriesFilter(
            states=[f["state"]] if f["state"] else [],
            label=f["label"] or None,
            tag_status=f["tag_status"] or None,
            since=_date(since),
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
            items = [s.series_summary(r.series, r.study, r.result, show) for r in rows]
        export = {k: f[k] for k in ("label", "tag_status", "accession") if f[k]}
        return page(
            request,
            "series_list.html",
            items=items,
            export_query=urlencode(export),
            f=f,
            **_pager(request, page_number, total),
        )

    @router.get("/series/{series_uid}", response_class=HTMLResponse)
    def series_page(request: Request, series_uid: str) -> Response:
        view = ctx.series_view(series_uid) if len(series_uid) <= 64 else None
        if view is None:
            return page(request, "not_found.html", 404, what=f"series {series_uid}")
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
            request,
            "series.html",
            d=detail,
            result=result,
            curve=curve,
            thumbs=thumbs,
            direction=direction,
        )

    @router.get("/jobs", response_class=HTMLResponse)
    def jobs(
        request: Request,
        state: str = "",
        kind: Annotated[str, Query(max_length=32)] = "",
        page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1,
    ) -> Response:
        offset = (page_number - 1) * PAGE_SIZE
        with ctx.db.session() as session:
            kinds = sorted({k for k, _ in read.summary(session).jobs_by_kind_state})
            f = {"state": _choice(state, JOB_STATES), "kind": _choice(kind, kinds)}
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
            request,
            "jobs.html",
            items=items,
            kinds=kinds,
            f=f,
            **_pager(request, page_number, total),
        )

    @router.get("/associations", response_class=HTMLResponse)
    def associations(
        request: Request,
        page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1,
    ) -> Response:
        offset = (page_number - 1) * PAGE_SIZE
        with ctx.db.session() as session:
            total, rows = read.associations_page(session, [], None, PAGE_SIZE, offset)
            events_total, events = read.events_page(session, [], None, None, 25, 0)
            items = [s.association_out(a) for a in rows]
            event_items = [s.event_out(e) for e in events]
        return page(
            request,
            "associations.html",
            items=items,
            events=event_items,
            events_total=events_total,
            **_pager(request, page_number, total),
        )

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str | None = None) -> Response:
        if ctx.settings.web.token is None:
            return RedirectResponse(safe_next(next), status_code=303)
        return page(request, "login.html", next=safe_next(next), error=None)

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        token = ctx.settings.web.token
        if token is None:
            return RedirectResponse("/", status_code=303)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BODY:
                return Response("sign-in form too large", status_code=413)
        form = parse_qs(body.decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0]
        target = safe_next((form.get("next") or ["/"])[0])
        if not token_matches(given, token):
            return page(request, "login.html", 401, next=target, error="That token is not valid.")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            session_value(token),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @router.get("/logout")
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    return router


def _choice(value: str, allowed: Sequence[str]) -> str:
    return value if value in allowed else ""


def _printable(value: str) -> bool:
    return value.isprintable()


def _date(value: str) -> datetime | None:
    """A date from a form's date input (YYYY-MM-DD) as midnight UTC; None if empty or bad."""
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC) if value else None
    except ValueError:
        return None


def _pager(request: Request, page_number: int, total: int) -> dict[str, Any]:
    pages = max(1, math.ceil(total / PAGE_SIZE))
    return {
        "total": total,
        "page": page_number,
        "pages": pages,
        "prev_url": _query(request, page=page_number - 1) if page_number > 1 else None,
        "next_url": _query(request, page=page_number + 1) if page_number < pages else None,
    }


def _nearest_probability(result: s.ResultDetail, z: float | None) -> float | None:
    if z is None or not result.slice_probabilities:
        return None
    return min(result.slice_probabilities, key=lambda pt: abs(pt.z_mm - z)).probability
