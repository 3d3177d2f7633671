"""Job handlers: what a worker does with each kind of job.

A handler takes a leased job and returns a ``JobResult``: an outcome and the store changes
that go with it. The worker commits those changes and the job's release together, so a
crash leaves either both or neither. A handler raises ``PermanentJobError`` for a problem
that retrying cannot fix (bad data); any other exception is retried with backoff.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivcontrast.store.db import Database
from ivcontrast.store.models import Instance, Job, Series, SeriesState
from ivcontrast.store.queue import JobResult, LeasedJob, PermanentJobError, enqueue
from ivcontrast.vocabulary import JobKind
from ivcontrast.worker.eligibility import EligibilityRule, skip_reason

log = logging.getLogger(__name__)

CHECK = JobKind.CHECK
CLASSIFY = JobKind.CLASSIFY


def current_series(session: Session, job: LeasedJob) -> Series | None:
    """The job's series if it still has the job's version (a late instance re-opens it)."""
    series = session.get(Series, job.series_id, with_for_update=True)
    if series is None or series.version != job.series_version:
        return None
    return series


def mark_series_failed(session: Session, job: Job) -> None:
    """``on_final`` for series jobs: the series shows the error of its last job."""
    if job.kind not in (CHECK, CLASSIFY):
        return  # e.g. a failed write-back: the series itself was checked and classified
    series = session.get(Series, job.series_id)
    if series is not None and series.version == job.series_version:
        series.state = SeriesState.FAILED
        series.error = f"{job.kind}: {job.error}"


class CheckSeries:
    """Eligibility: skip with a reason, or queue the series for classification."""

    def __init__(self, db: Database, rule: EligibilityRule, max_attempts: int) -> None:
        self.db = db
        self.rule = rule
        self.max_attempts = max_attempts

    def __call__(self, job: LeasedJob) -> JobResult:
        with self.db.session() as session:
            series = session.get(Series, job.series_id)
            if series is None:
                raise PermanentJobError(f"series {job.series_id} no longer exists")
            # The rows themselves satisfy eligibility.EligibilityHeader.
            headers = session.scalars(select(Instance).where(Instance.series_id == series.id)).all()
            reason = skip_reason(series.modality, series.series_description, headers, self.rule)
            series_uid = series.series_uid

        if reason is not None:
            log.info("series skipped: %s: %s", series_uid, reason, extra={"series_uid": series_uid})

            def skip(session: Session) -> None:
                series = current_series(session, job)
                if series is not None:
                    series.state = SeriesState.SKIPPED
                    series.skip_reason = reason

            return JobResult("skipped", skip)

        def accept(session: Session) -> None:
            series = current_series(session, job)
            if series is not None:
                series.state = SeriesState.ELIGIBLE
                enqueue(
                    session,
                    CLASSIFY,
                    job.series_id,
                    job.series_version,
                    max_attempts=self.max_attempts,
                )

        log.info(
            "series eligible: %s (%d slices)",
            series_uid,
            len(headers),
            extra={"series_uid": series_uid},
        )
        return JobResult("eligible", accept)
