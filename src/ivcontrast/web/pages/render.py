"""What every page shares: the Jinja2 templates and their filters, ``Page`` (a template
rendered with the navigation, the sign-in state and the model notice), paging and the
lenient reading of filter forms."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from ivcontrast import __version__
from ivcontrast.store.models import SeriesState, utcnow
from ivcontrast.vocabulary import Label, tag_says_contrast
from ivcontrast.web.context import WebContext
from ivcontrast.web.deps import MAX_OFFSET, Context

PAGE_SIZE = 50
MAX_PAGE = MAX_OFFSET // PAGE_SIZE
STATE_ORDER = [str(x) for x in SeriesState]


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


LABEL_TEXT: dict[str, str] = {
    Label.CONTRAST: "IV contrast",
    Label.NO_CONTRAST: "No IV contrast",
    Label.REVIEW: "Review",
}


def _label_text(label: str | None) -> str:
    return LABEL_TEXT.get(label or "", "—")


@functools.cache
def templates() -> Jinja2Templates:
    """Built once per process: the templates and filters are package data, never changed."""
    out = Jinja2Templates(directory=str(templates_dir()))
    out.env.filters.update(
        when=_when,
        ago=_ago,
        size=_size,
        secs=_seconds,
        dicom_date=_dicom_date,
        label_text=_label_text,
        tag_claim=_tag_claim,
    )
    out.env.globals.update(version=__version__, state_order=STATE_ORDER)
    return out


class Renderer:
    """Renders a template with what every page shows; routes take it as ``page: Page``."""

    def __init__(self, request: Request, ctx: Context) -> None:
        self.request = request
        self.ctx: WebContext = ctx

    def __call__(self, name: str, status_code: int = 200, **context: Any) -> Response:
        base = {
            "request": self.request,
            "show_patient": self.ctx.show_patient,
            "token_auth": self.ctx.settings.web.token is not None,
            "nav": name.removesuffix(".html"),
            "model_notice": self.ctx.model_notice,
        }
        return templates().TemplateResponse(
            self.request, name, {**base, **context}, status_code=status_code
        )


Page = Annotated[Renderer, Depends()]


def query_with(request: Request, **changes: Any) -> str:
    """The current query string with ``changes`` applied (None removes a key)."""
    params = {k: v for k, v in request.query_params.multi_items() if k not in changes}
    params.update({k: v for k, v in changes.items() if v is not None})
    return "?" + urlencode(params) if params else ""


def pager(request: Request, page_number: int, total: int) -> dict[str, Any]:
    pages = max(1, math.ceil(total / PAGE_SIZE))
    return {
        "total": total,
        "page": page_number,
        "pages": pages,
        "prev_url": query_with(request, page=page_number - 1) if page_number > 1 else None,
        "next_url": query_with(request, page=page_number + 1) if page_number < pages else None,
    }


def choice(value: str, allowed: Sequence[str]) -> str:
    """A form's value if it is one of ``allowed``; "" (any) otherwise."""
    return value if value in allowed else ""


def form_date(value: str) -> datetime | None:
    """A date from a form's date input (YYYY-MM-DD) as midnight UTC; None if empty or bad."""
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC) if value else None
    except ValueError:
        return None
