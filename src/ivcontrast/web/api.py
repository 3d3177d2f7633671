"""The read-only JSON API under ``/api``, the thumbnails, ``/health`` and ``/metrics``."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi._compat import ModelField, field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, BeforeValidator, Field

from ivcontrast.store import read
from ivcontrast.store.models import AssociationState, JobState, SeriesState, utcnow
from ivcontrast.store.read import ResultQuery
from ivcontrast.vocabulary import TagStatus
from ivcontrast.web import health as health_checks
from ivcontrast.web import metrics
from ivcontrast.web import schemas as s
from ivcontrast.web.context import WebContext, utc

UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"  # no control characters (PostgreSQL refuses NUL)
KIND_PATTERN = r"^[A-Za-z0-9_.:-]+$"
MAX_OFFSET = 1_000_000_000

Label = Literal["contrast", "no_contrast"]
UidPath = Annotated[str, Path(max_length=64, pattern=UID_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]
ISO_DATE_START = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _iso_only(value: object) -> object:
    # pydantic would read "0.5" as a Unix time; only ISO 8601 dates and times are meant.
    if isinstance(value, str) and not ISO_DATE_START.match(value):
        raise ValueError("expected an ISO 8601 date or date-time")
    return value


Time = Annotated[datetime, BeforeValidator(_iso_only)]
Since = Annotated[Time | None, Query(description="from this time on (ISO 8601; UTC if naive)")]
Until = Annotated[Time | None, Query(description="before this time (ISO 8601; UTC if naive)")]
Accession = Annotated[str | None, Query(max_length=16, pattern=TEXT_PATTERN)]
Kind = Annotated[
    str | None,
    Query(min_length=1, max_length=32, pattern=KIND_PATTERN, description="e.g. classify"),
]


class ErrorOut(BaseModel):
    detail: str | list[dict[str, Any]] = Field(description="why (a list for invalid parameters)")


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such series"}
}


class ResultFilterParams:
    """The results filters, shared by the JSON page and the export (as ``ivcontrast results``)."""

    def __init__(
        self,
        label: Label | None = None,
        tag_status: Annotated[
            TagStatus | None, Query(description="disagrees: the DICOM tag contradicts the call")
        ] = None,
        since: Annotated[
            Time | None, Query(description="results created from this time on")
        ] = None,
        until: Annotated[Time | None, Query(description="results created before this time")] = None,
        study_uid: Annotated[str | None, Query(max_length=64, pattern=UID_PATTERN)] = None,
        series_uid: Annotated[str | None, Query(max_length=64, pattern=UID_PATTERN)] = None,
        accession: Accession = None,
        all_versions: Annotated[
            bool, Query(description="every result version, not only each series' newest")
        ] = False,
    ) -> None:
        self.filter = ResultQuery(
            label=label,
            tag_status=tag_status,
            since=utc(since),
            until=utc(until),
            study_uid=study_uid,
            series_uid=series_uid,
            accession=accession,
            all_versions=all_versions,
        )


def _query_fields(dependant: Dependant) -> Iterator[ModelField]:
    yield from dependant.query_params
    for sub in dependant.dependencies:
        yield from _query_fields(sub)


def strict_query(request: Request) -> None:
    """Unknown or repeated query parameters are errors: a mistyped filter must not silently
    return everything, and ``?state=a&state=b`` must not quietly mean ``state=b``."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    fields = {f.alias: f for f in _query_fields(route.dependant)}
    errors = []
    counts = Counter(name for name, _ in request.query_params.multi_items())
    for name, count in counts.items():
        field = fields.get(name)
        if field is None:
            message = "unknown query parameter"
        elif count > 1 and not field_annotation_is_sequence(field.field_info.annotation):
            message = "query parameter given more than once"
        else:
            continue
        errors.append(
            {
                "type": "extra_forbidden",
                "loc": ("query", name),
                "msg": message,
                "input": request.query_params.getlist(name),
            }
        )
    if errors:
        raise RequestValidationError(errors)


def build_router(ctx: WebContext) -> APIRouter:
    router = APIRouter(dependencies=[Depends(strict_query)])
    show = ctx.show_patient

    @router.get("/api/summary", response_model=s.SummaryOut, tags=["overview"])
    def summary() -> s.SummaryOut:
        """Counts by series state, by result label and tag status; jobs; live workers."""
        now = utcnow()
        with ctx.db.session() as session:
            counts = read.summary(session)
            workers = read.workers(session)
        return s.SummaryOut(
            series_by_state=counts.series_by_state,
            results_by_label=counts.results_by_label,
            results_by_tag_status=counts.results_by_tag_status,
            jobs=[
                s.JobCount(kind=kind, state=state, count=n)
                for (kind, state), n in sorted(counts.jobs_by_kind_state.items())
            ],
            instances=counts.instances,
            associations=counts.associations,
            workers=[s.worker_out(w, now) for w in workers],
        )

    @router.get("/api/series", response_model=s.Page[s.SeriesSummary], tags=["series"])
    def list_series(
        state: Annotated[list[SeriesState] | None, Query(description="repeatable")] = None,
        label: Annotated[Label | None, Query(description="label of the newest result")] = None,
        tag_status: Annotated[
            TagStatus | None, Query(description="disagrees: the DICOM tag contradicts the call")
        ] = None,
        since: Since = None,
        until: Until = None,
        study_uid: Annotated[str | None, Query(max_length=64, pattern=UID_PATTERN)] = None,
        series_uid: Annotated[str | None, Query(max_length=64, pattern=UID_PATTERN)] = None,
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
            items = [s.series_summary(r.series, r.study, r.result, show) for r in rows]
        return s.Page[s.SeriesSummary](total=total, limit=limit, offset=offset, items=items)

    @router.get(
        "/api/series/{series_uid}",
        response_model=s.SeriesDetail,
        responses=NOT_FOUND,
        tags=["series"],
    )
    def get_series(series_uid: UidPath) -> s.SeriesDetail:
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
        tags=["series"],
    )
    def thumbnail(
        request: Request,
        series_uid: UidPath,
        index: Annotated[int, Path(ge=0, le=1000)],
        size: Annotated[int, Query(ge=32, le=1024, description="longest side in pixels")] = 192,
    ) -> Response:
        """Representative slice ``index`` (0 = the lowest z) in a soft-tissue window (W400/L40)."""
        png, etag = ctx.thumbnail(series_uid, index, size)
        headers = {"ETag": etag, "Cache-Control": "private, max-age=3600"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(png, media_type="image/png", headers=headers)

    @router.get("/api/results", response_model=s.Page[s.ResultOut], tags=["results"])
    def list_results(
        params: Annotated[ResultFilterParams, Depends()],
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> s.Page[s.ResultOut]:
        """Contrast calls, newest first; by default each series' newest version only."""
        with ctx.db.session() as session:
            total, rows = read.results_page(session, params.filter, limit, offset)
            items = [s.result_out(r.result, r.series, r.study, show) for r in rows]
        return s.Page[s.ResultOut](total=total, limit=limit, offset=offset, items=items)

    @router.get(
        "/api/results/export",
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/csv": {}, "application/json": {}},
                "description": "every matching result, as a file",
            }
        },
        tags=["results"],
    )
    def export_results(
        params: Annotated[ResultFilterParams, Depends()],
        format: Annotated[Literal["csv", "json"], Query()] = "csv",
    ) -> StreamingResponse:
        """Every matching result as a CSV or JSON file (same filters as ``/api/results``)."""
        items = _export_rows(ctx, params.filter)
        if format == "json":
            body = _json_lines(items, show)
            media = "application/json"
        else:
            body = _csv_lines(items, show)
            media = "text/csv; charset=utf-8"
        stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
        disposition = f'attachment; filename="ivcontrast-results-{stamp}.{format}"'
        return StreamingResponse(
            body, media_type=media, headers={"Content-Disposition": disposition}
        )

    @router.get("/api/associations", response_model=s.Page[s.AssociationOut], tags=["activity"])
    def list_associations(
        state: Annotated[list[AssociationState] | None, Query(description="repeatable")] = None,
        calling_ae: Annotated[str | None, Query(max_length=16, pattern=TEXT_PATTERN)] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> s.Page[s.AssociationOut]:
        """DICOM associations, accepted and rejected, newest first."""
        with ctx.db.session() as session:
            total, rows = read.associations_page(
                session, [str(x) for x in state or []], calling_ae, limit, offset
            )
            items = [s.association_out(a) for a in rows]
        return s.Page[s.AssociationOut](total=total, limit=limit, offset=offset, items=items)

    @router.get("/api/jobs", response_model=s.Page[s.JobOut], tags=["activity"])
    def list_jobs(
        state: Annotated[
            list[JobState] | None, Query(description="repeatable; 'failed' lists the failures")
        ] = None,
        kind: Kind = None,
        series_uid: Annotated[str | None, Query(max_length=64, pattern=UID_PATTERN)] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> s.Page[s.JobOut]:
        """Jobs with their attempts, outcome and last error, newest first."""
        with ctx.db.session() as session:
            total, rows = read.jobs_page(
                session,
                [kind] if kind else [],
                [str(x) for x in state or []],
                series_uid,
                limit,
                offset,
            )
            items = [s.job_out(job, uid) for job, uid in rows]
        return s.Page[s.JobOut](total=total, limit=limit, offset=offset, items=items)

    @router.get("/api/events", response_model=s.Page[s.EventOut], tags=["activity"])
    def list_events(
        kind: Kind = None,
        series_uid: Annotated[str | None, Query(max_length=64, pattern=UID_PATTERN)] = None,
        association_id: Annotated[str | None, Query(max_length=36, pattern=TEXT_PATTERN)] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> s.Page[s.EventOut]:
        """Audit events (re-sent instances, re-opened series, rejections), newest first."""
        with ctx.db.session() as session:
            total, rows = read.events_page(
                session, [kind] if kind else [], series_uid, association_id, limit, offset
            )
            items = [s.event_out(e) for e in rows]
        return s.Page[s.EventOut](total=total, limit=limit, offset=offset, items=items)

    @router.get("/api/workers", response_model=list[s.WorkerOut], tags=["activity"])
    def list_workers(
        include_stopped: Annotated[bool, Query(description="also stopped workers")] = False,
    ) -> list[s.WorkerOut]:
        """Worker processes with their heartbeat age, newest heartbeat first."""
        now = utcnow()
        with ctx.db.session() as session:
            return [s.worker_out(w, now) for w in read.workers(session, include_stopped)]

    @router.get(
        "/health",
        response_model=s.HealthOut,
        responses={503: {"model": s.HealthOut, "description": "a check failed"}},
        tags=["operations"],
    )
    def health() -> JSONResponse:
        """Database, spool free space, worker heartbeats, model: 200 if all pass, else 503."""
        report = health_checks.health(ctx.settings, ctx.db)
        return JSONResponse(
            report.model_dump(mode="json"), status_code=200 if report.status == "ok" else 503
        )

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {metrics.CONTENT_TYPE.split(";")[0]: {}}}},
        tags=["operations"],
    )
    def prometheus() -> Response:
        """Prometheus text format, computed from the store at scrape time."""
        return Response(metrics.render(ctx.settings, ctx.db), media_type=metrics.CONTENT_TYPE)

    return router


PATIENT_FIELDS = frozenset({"patient_name", "patient_id"})


def _export_rows(ctx: WebContext, filt: ResultQuery) -> Iterator[s.ResultOut]:
    """The rows, read in batches while the response streams (the session lives as long)."""
    with ctx.db.session() as session:
        for row in read.find_results(session, filt):
            yield s.result_out(row.result, row.series, row.study, ctx.show_patient)


def _csv_lines(items: Iterator[s.ResultOut], show_patient: bool) -> Iterator[str]:
    columns = [n for n in s.ResultOut.model_fields if show_patient or n not in PATIENT_FIELDS]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for item in items:
        row = item.model_dump(mode="json")
        writer.writerow(["" if row[c] is None else row[c] for c in columns])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json_lines(items: Iterator[s.ResultOut], show_patient: bool) -> Iterator[str]:
    exclude = set() if show_patient else set(PATIENT_FIELDS)
    yield "["
    for i, item in enumerate(items):
        yield ("," if i else "") + "\n" + item.model_dump_json(exclude=exclude)
    yield "\n]\n"
