"""``/api/associations``, ``/api/jobs``, ``/api/events`` and ``/api/workers``: what the node
did and who does it, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ivcontrast.store import read
from ivcontrast.store.models import AssociationState, JobState, utcnow
from ivcontrast.web import schemas as s
from ivcontrast.web.deps import TEXT_PATTERN, Context, Kind, Limit, Offset, UidQuery, strict_query

router = APIRouter(dependencies=[Depends(strict_query)], tags=["activity"])


@router.get("/api/associations", response_model=s.Page[s.AssociationOut])
def list_associations(
    ctx: Context,
    state: Annotated[list[AssociationState] | None, Query(description="repeatable")] = None,
    calling_ae: Annotated[str | None, Query(max_length=16, pattern=TEXT_PATTERN)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> s.Page[s.AssociationOut]:
    """DICOM associations, accepted and rejected, newest first."""
    states = [str(x) for x in state or []]
    with ctx.db.session() as session:
        total, rows = read.associations_page(session, states, calling_ae, limit, offset)
        items = [s.association_out(a) for a in rows]
    return s.Page[s.AssociationOut](total=total, limit=limit, offset=offset, items=items)


@router.get("/api/jobs", response_model=s.Page[s.JobOut])
def list_jobs(
    ctx: Context,
    state: Annotated[
        list[JobState] | None, Query(description="repeatable; 'failed' lists the failures")
    ] = None,
    kind: Kind = None,
    series_uid: UidQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> s.Page[s.JobOut]:
    """Jobs with their attempts, outcome and last error, newest first."""
    kinds, states = [kind] if kind else [], [str(x) for x in state or []]
    with ctx.db.session() as session:
        total, rows = read.jobs_page(session, kinds, states, series_uid, limit, offset)
        items = [s.job_out(job, uid) for job, uid in rows]
    return s.Page[s.JobOut](total=total, limit=limit, offset=offset, items=items)


@router.get("/api/events", response_model=s.Page[s.EventOut])
def list_events(
    ctx: Context,
    kind: Kind = None,
    series_uid: UidQuery = None,
    association_id: Annotated[str | None, Query(max_length=36, pattern=TEXT_PATTERN)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> s.Page[s.EventOut]:
    """Audit events (re-sent instances, re-opened series, rejections), newest first."""
    kinds = [kind] if kind else []
    with ctx.db.session() as session:
        total, rows = read.events_page(session, kinds, series_uid, association_id, limit, offset)
        items = [s.event_out(e) for e in rows]
    return s.Page[s.EventOut](total=total, limit=limit, offset=offset, items=items)


@router.get("/api/workers", response_model=list[s.WorkerOut])
def list_workers(
    ctx: Context,
    include_stopped: Annotated[bool, Query(description="also stopped workers")] = False,
) -> list[s.WorkerOut]:
    """Worker processes with their heartbeat age, newest heartbeat first."""
    now = utcnow()
    with ctx.db.session() as session:
        return [s.worker_out(w, now) for w in read.workers(session, include_stopped)]
