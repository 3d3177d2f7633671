"""Queue write-back jobs for a new result, inside the transaction that records it."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivcontrast.config import WritebackSettings
from ivcontrast.store.models import Job, Result, Series, Writeback
from ivcontrast.store.queue import enqueue
from ivcontrast.vocabulary import JobKind, Label
from ivcontrast.writeback.policy import selected
from ivcontrast.writeback.uids import WritebackUids

log = logging.getLogger(__name__)

WRITEBACK = JobKind.WRITEBACK


def enqueue_writeback(session: Session, settings: WritebackSettings, result: Result) -> int:
    """Queue one ``writeback`` job per destination for ``result``; returns how many were added.

    Call it in the transaction that adds ``result``, so that the result and its write-back
    are recorded together or not at all. Nothing is queued when write-back is disabled or
    the trigger policy does not select the result. Jobs are unique per (series, series
    version, destination): calling it again for the same result version adds nothing, and
    a re-opened series (a new version, a new result) is written back once more.
    """
    if not settings.enabled:
        return 0
    label = result.label
    if label == Label.REVIEW:
        # No corrected tag for a series a person has to look at, unless the site says so.
        if settings.review == "skip" or result.network_label is None:
            log.info(
                "series %d version %d is in review: no write-back (writeback.review = %s)",
                result.series_id,
                result.series_version,
                settings.review,
            )
            return 0
        label = result.network_label
    if not selected(settings, label, result.probability, result.tag_status):
        return 0
    if result.id is None:
        session.flush()  # the writeback rows refer to the result by id
    series = session.get(Series, result.series_id)
    if series is None:
        raise ValueError(f"result {result.id}: series {result.series_id} does not exist")
    uids = WritebackUids(
        settings.uid_prefix, series.series_uid, result.series_version, settings.uid_policy == "keep"
    )
    added = 0
    for destination in settings.destinations:
        if not enqueue(
            session,
            WRITEBACK,
            series.id,
            result.series_version,
            key=destination.name,
            payload={"result_id": result.id, "backoff_seconds": settings.backoff_seconds},
            max_attempts=settings.max_attempts,
        ):
            continue
        job_id = session.scalars(
            select(Job.id).where(
                Job.kind == WRITEBACK,
                Job.series_id == series.id,
                Job.series_version == result.series_version,
                Job.key == destination.name,
            )
        ).one()
        session.add(
            Writeback(
                job_id=job_id,
                result_id=result.id,
                series_id=series.id,
                series_version=result.series_version,
                destination=destination.name,
                destination_kind=destination.kind,
                label=label,
                uid_policy=settings.uid_policy,
                copies_series_uid=uids.copies_series_uid if settings.copies else None,
                report_series_uid=uids.report_series_uid if settings.report else None,
                report_sop_uid=uids.report_sop_uid if settings.report else None,
            )
        )
        added += 1
    if added:
        log.info(
            "write-back queued: series %s version %d (%s) to %d destination(s)",
            series.series_uid,
            result.series_version,
            result.label,
            added,
            extra={"series_uid": series.series_uid},
        )
    return added
