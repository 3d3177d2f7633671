"""``/api/results`` and ``/api/results/export``: the contrast calls, with the filters of
``ivcontrast results`` (the store's ``read.ResultQuery``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from ivcontrast.store import read
from ivcontrast.store.models import utcnow
from ivcontrast.vocabulary import TagStatus
from ivcontrast.web import schemas as s
from ivcontrast.web.context import WebContext, utc
from ivcontrast.web.deps import (
    Accession,
    Context,
    LabelParam,
    Limit,
    Offset,
    Time,
    UidQuery,
    strict_query,
)

router = APIRouter(dependencies=[Depends(strict_query)], tags=["results"])
# Left out of exports unless web.show_patient_names is set.
PATIENT_FIELDS = frozenset({"patient_name", "patient_id", "accession_number"})


class ResultFilterParams:
    """The results filters, shared by the JSON page and the export (as ``ivcontrast results``)."""

    def __init__(
        self,
        label: LabelParam | None = None,
        tag_status: Annotated[
            TagStatus | None, Query(description="disagrees: the DICOM tag contradicts the call")
        ] = None,
        since: Annotated[
            Time | None, Query(description="results created from this time on")
        ] = None,
        until: Annotated[Time | None, Query(description="results created before this time")] = None,
        study_uid: UidQuery = None,
        series_uid: UidQuery = None,
        accession: Accession = None,
        all_versions: Annotated[
            bool, Query(description="every result version, not only each series' newest")
        ] = False,
    ) -> None:
        self.filter = read.ResultQuery(
            label=label,
            tag_status=tag_status,
            since=utc(since),
            until=utc(until),
            study_uid=study_uid,
            series_uid=series_uid,
            accession=accession,
            all_versions=all_versions,
        )


Filters = Annotated[ResultFilterParams, Depends()]


@router.get("/api/results", response_model=s.Page[s.ResultOut])
def list_results(
    ctx: Context, params: Filters, limit: Limit = 100, offset: Offset = 0
) -> s.Page[s.ResultOut]:
    """Contrast calls, newest first; by default each series' newest version only."""
    with ctx.db.session() as session:
        total, rows = read.results_page(session, params.filter, limit, offset)
        items = [s.result_out(r.result, r.series, r.study, ctx.show_patient) for r in rows]
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
)
def export_results(
    ctx: Context,
    params: Filters,
    format: Annotated[Literal["csv", "json"], Query()] = "csv",
) -> StreamingResponse:
    """Every matching result as a CSV or JSON file (same filters as ``/api/results``)."""
    items = _export_rows(ctx, params.filter)
    if format == "json":
        body = _json_lines(items, ctx.show_patient)
        media = "application/json"
    else:
        body = _csv_lines(items, ctx.show_patient)
        media = "text/csv; charset=utf-8"
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    disposition = f'attachment; filename="ivcontrast-results-{stamp}.{format}"'
    return StreamingResponse(body, media_type=media, headers={"Content-Disposition": disposition})


def _export_rows(ctx: WebContext, filt: read.ResultQuery) -> Iterator[s.ResultOut]:
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
        writer.writerow([_cell(row[c]) for c in columns])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _cell(value: Any) -> Any:
    """A CSV cell: review reasons one after another ("; "), the physics opinion as JSON."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return value


def _json_lines(items: Iterator[s.ResultOut], show_patient: bool) -> Iterator[str]:
    exclude = set() if show_patient else set(PATIENT_FIELDS)
    yield "["
    for i, item in enumerate(items):
        yield ("," if i else "") + "\n" + item.model_dump_json(exclude=exclude)
    yield "\n]\n"
