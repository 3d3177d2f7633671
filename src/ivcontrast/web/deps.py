"""What every router shares: the app's ``WebContext`` as a dependency, the strict query check
of the JSON API, and the query and path parameter types.

``create_app`` puts the context in ``app.state.context``; a route asks for it with a
``ctx: Context`` parameter instead of closing over it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from fastapi import Depends, Path, Query, Request
from fastapi._compat import ModelField, field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, BeforeValidator, Field

from ivcontrast.vocabulary import Label
from ivcontrast.web.context import WebContext

UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"  # no control characters (PostgreSQL refuses NUL)
KIND_PATTERN = r"^[A-Za-z0-9_.:-]+$"
MAX_OFFSET = 1_000_000_000
ISO_DATE_START = re.compile(r"^\d{4}-\d{2}-\d{2}")


def web_context(request: Request) -> WebContext:
    return cast(WebContext, request.app.state.context)


Context = Annotated[WebContext, Depends(web_context)]


def _iso_only(value: object) -> object:
    # pydantic would read "0.5" as a Unix time; only ISO 8601 dates and times are meant.
    if isinstance(value, str) and not ISO_DATE_START.match(value):
        raise ValueError("expected an ISO 8601 date or date-time")
    return value


LabelParam = Literal[Label.CONTRAST, Label.NO_CONTRAST, Label.REVIEW]
UidPath = Annotated[str, Path(max_length=64, pattern=UID_PATTERN)]
UidQuery = Annotated[str | None, Query(max_length=64, pattern=UID_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]
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
