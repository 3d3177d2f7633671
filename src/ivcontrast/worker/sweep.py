"""The completion sweep: find receiving series that are complete and queue them once.

The decision itself is ``completion.completion_reason``; this module reads the state it
needs from the store and, in one write transaction per sweep, moves each complete series
to ``queued`` and enqueues its ``check`` job for the current version. The transaction and
the job's unique key make "queued exactly once per version" hold with several sweepers.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivcontrast.store.db import Database
from ivcontrast.store.models import Association, Instance, Series, SeriesState, utcnow
from ivcontrast.store.queue import enqueue
from ivcontrast.vocabulary import JobKind
from ivcontrast.worker.completion import CompletionRule, DeliveringAssociation, completion_reason

log = logging.getLogger(__name__)

CHECK = JobKind.CHECK


def sweep_once(
    db: Database, rule: CompletionRule, max_attempts: int, now: datetime | None = None
) -> list[str]:
    """Queue every receiving series that is complete at ``now``; returns their UIDs."""
    now = now or utcnow()
    earliest = now - timedelta(seconds=min(rule.quiet_seconds, rule.settle_seconds))
    with db.session() as session:
        # A cheap read first, so the write lock is taken only when something may be due.
        due = session.scalar(
            select(Series.id)
            .where(Series.state == SeriesState.RECEIVING, Series.last_received_at <= earliest)
            .limit(1)
        )
    if due is None:
        return []
    queued: list[str] = []
    with db.write() as session:
        candidates = session.scalars(
            select(Series)
            .where(Series.state == SeriesState.RECEIVING, Series.last_received_at <= earliest)
            .with_for_update(skip_locked=True)
        ).all()
        delivering = _delivering_associations(session, [s.id for s in candidates])
        for series in candidates:
            reason = completion_reason(now, series.last_received_at, delivering[series.id], rule)
            if reason is None:
                continue
            series.state = SeriesState.QUEUED
            series.completed_at = now
            enqueue(session, CHECK, series.id, series.version, max_attempts=max_attempts)
            queued.append(series.series_uid)
            log.info(
                "series complete (%s): %s version %d, %d instances",
                reason,
                series.series_uid,
                series.version,
                series.instance_count,
                extra={"series_uid": series.series_uid},
            )
    return queued


def _delivering_associations(
    session: Session, series_ids: list[int]
) -> dict[int, list[DeliveringAssociation]]:
    out: dict[int, list[DeliveringAssociation]] = defaultdict(list)
    if not series_ids:
        return out
    rows = session.execute(
        select(Instance.series_id, Association.state, Association.ended_at)
        .join(Association, Association.id == Instance.association_id)
        .where(Instance.series_id.in_(series_ids))
        .distinct()
    )
    for series_id, state, ended_at in rows:
        out[series_id].append(DeliveringAssociation(state=state, ended_at=ended_at))
    return out
