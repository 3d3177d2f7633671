"""``/api/summary``: the counts the overview page shows, and the live workers."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ivcontrast.store import read
from ivcontrast.store.models import utcnow
from ivcontrast.vocabulary import Label
from ivcontrast.web import schemas as s
from ivcontrast.web.deps import Context, strict_query

router = APIRouter(dependencies=[Depends(strict_query)], tags=["overview"])


@router.get("/api/summary", response_model=s.SummaryOut)
def summary(ctx: Context) -> s.SummaryOut:
    """Counts by series state, by result label (review included) and tag status; jobs; live
    workers."""
    now = utcnow()
    with ctx.db.session() as session:
        counts = read.summary(session)
        workers = read.workers(session)
    return s.SummaryOut(
        series_by_state=counts.series_by_state,
        results_by_label=counts.results_by_label,
        in_review=counts.results_by_label.get(Label.REVIEW, 0),
        results_by_tag_status=counts.results_by_tag_status,
        jobs=[
            s.JobCount(kind=kind, state=state, count=n)
            for (kind, state), n in sorted(counts.jobs_by_kind_state.items())
        ],
        instances=counts.instances,
        associations=counts.associations,
        workers=[s.worker_out(w, now) for w in workers],
    )
