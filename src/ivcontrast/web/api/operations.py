"""``/health`` (200 if every check passes, else 503) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from ivcontrast.web import health as health_checks
from ivcontrast.web import metrics
from ivcontrast.web import schemas as s
from ivcontrast.web.auth import may_see_details
from ivcontrast.web.deps import Context, strict_query

router = APIRouter(dependencies=[Depends(strict_query)], tags=["operations"])


@router.get(
    "/health",
    response_model=s.HealthOut,
    responses={503: {"model": s.HealthOut, "description": "a check failed"}},
)
def health(ctx: Context, request: Request) -> JSONResponse:
    """Database, spool free space, worker heartbeats, model: 200 if all pass, else 503.

    Where a token is set and the request has none (a public probe), only the status of
    each check is returned."""
    report = health_checks.health(ctx.settings, ctx.db)
    body = (
        report.model_dump(mode="json")
        if may_see_details(request.scope)
        else health_checks.public_summary(report)
    )
    return JSONResponse(body, status_code=200 if report.status == "ok" else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {metrics.CONTENT_TYPE.split(";")[0]: {}}}},
)
def prometheus(ctx: Context) -> Response:
    """Prometheus text format, computed from the store at scrape time."""
    return Response(metrics.render(ctx.settings, ctx.db), media_type=metrics.CONTENT_TYPE)
