"""``/``: counts, health, recent series, disagreements, failures and workers at a glance."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from ivcontrast.store import read
from ivcontrast.store.models import JobState, SeriesState, utcnow
from ivcontrast.vocabulary import TagStatus
from ivcontrast.web import health as health_checks
from ivcontrast.web import schemas as s
from ivcontrast.web.deps import Context
from ivcontrast.web.pages.render import Page

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def overview(ctx: Context, page: Page) -> Response:
    now, show = utcnow(), ctx.show_patient
    with ctx.db.session() as session:
        counts = read.summary(session)

        def series(filt: read.SeriesFilter, limit: int) -> tuple[int, list[s.SeriesSummary]]:
            total, rows = read.series_page(session, filt, limit, 0)
            return total, [s.series_summary(r.series, r.study, r.result, show) for r in rows]

        _, recent = series(read.SeriesFilter(), 15)
        disagreements_total, disagreements = series(
            read.SeriesFilter(tag_status=TagStatus.DISAGREES), 10
        )
        failed_series_total, failed_series = series(
            read.SeriesFilter(states=[SeriesState.FAILED]), 10
        )
        failed_jobs_total, failed_jobs = read.jobs_page(session, [], [JobState.FAILED], None, 10)
        workers = [s.worker_out(w, now) for w in read.workers(session)]
        failed_job_rows = [s.job_out(j, uid) for j, uid in failed_jobs]
    queue: dict[str, int] = {}
    for (_, state), n in counts.jobs_by_kind_state.items():
        queue[state] = queue.get(state, 0) + n
    return page(
        "overview.html",
        health=health_checks.health(ctx.settings, ctx.db),
        counts=counts,
        series_total=sum(counts.series_by_state.values()),
        results_total=sum(counts.results_by_label.values()),
        queue=queue,
        recent=recent,
        disagreements=disagreements,
        disagreements_total=disagreements_total,
        failed_series=failed_series,
        failed_series_total=failed_series_total,
        failed_jobs=failed_job_rows,
        failed_jobs_total=failed_jobs_total,
        workers=workers,
        refresh_seconds=30,
    )
