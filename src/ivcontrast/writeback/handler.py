"""The ``writeback`` job: corrected copies and the report of one result, to one destination.

This is the worker-facing side of write-back (it speaks the job protocol of
``ivcontrast.worker.jobs``); everything it does with DICOM lives in the modules beside it.

An attempt reads each spooled instance of the classified series version, one at a time,
writes its corrected copy into the destination (a folder, or a staging file streamed over
one association), then the report. Its outcome is recorded on the job's ``writebacks``
row: instances sent, the last failed DICOM status, the failures, the error. The job is
then released: ``sent``; retried with backoff (destination unreachable, association lost,
a failure status); failed for good (association rejected, a SOP class the destination does
not take, a spool file gone); or ``superseded`` when the series was re-opened meanwhile
(its new version is classified and written back on its own).
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivcontrast import __version__
from ivcontrast.config import Settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import Instance, Result, Series, Writeback, utcnow
from ivcontrast.store.queue import JobResult, LeasedJob, PermanentJobError
from ivcontrast.writeback.correct import (
    Contribution,
    CopiedInstance,
    CopyPlan,
    UnreadableSource,
    write_corrected_copy,
)
from ivcontrast.writeback.destinations import (
    Delivery,
    Destination,
    DestinationError,
    DestinationRejected,
    Outbound,
    open_destination,
)
from ivcontrast.writeback.policy import confidence, contrast_tags
from ivcontrast.writeback.report import Finding, SourceInstance, build_report
from ivcontrast.writeback.uids import WritebackUids

log = logging.getLogger(__name__)

MAX_RECORDED_FAILURES = 100


class WritebackFailed(Exception):
    """An attempt failed in a way that a later attempt may not (retried with backoff)."""


@dataclass(frozen=True)
class SpooledInstance:
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    path: str  # relative to the spool


@dataclass(frozen=True)
class Work:
    """What one attempt sends, read from the store in one go."""

    writeback_id: int
    destination: str
    study_uid: str
    series_uid: str
    label: str
    copies: bool
    report: bool
    uids: WritebackUids
    finding: Finding
    instances: list[SpooledInstance]


@dataclass
class Attempt:
    """What one attempt achieved, for the ``writebacks`` row."""

    total: int
    sent: int = 0
    report_sent: bool = False
    last_status: str | None = None
    failed: int = 0
    failures: list[list[str]] = field(default_factory=list)
    permanent: bool = False

    def add(self, delivery: Delivery, is_report: bool = False) -> None:
        if delivery.ok:
            if is_report:
                self.report_sent = True
            else:
                self.sent += 1
            return
        if delivery.status is not None:
            self.last_status = delivery.status
        self.permanent = self.permanent or delivery.permanent
        self.failed += 1
        if len(self.failures) < MAX_RECORDED_FAILURES:
            self.failures.append([delivery.sop_instance_uid, delivery.reason or "failed"])


class WritebackHandler:
    """Runs ``writeback`` jobs; registered by the worker when write-back is enabled."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.policy = settings.writeback
        self.db = db

    def __call__(self, job: LeasedJob) -> JobResult:
        work = self._load(job)
        if work is None:

            def superseded(session: Session) -> None:
                row = session.scalars(select(Writeback).where(Writeback.job_id == job.id)).one()
                row.outcome = "superseded"
                row.error = None

            log.info("write-back job %d: series re-opened since; superseded", job.id)
            return JobResult("superseded", superseded)

        started = utcnow()
        attempt = Attempt(total=len(work.instances) if work.copies else 0)
        try:
            self._deliver(job, work, attempt, started)
        except (DestinationRejected, UnreadableSource) as exc:
            self._record(work, attempt, started, str(exc))
            raise PermanentJobError(str(exc)) from exc
        except Exception as exc:
            known = isinstance(exc, (DestinationError, PermanentJobError))
            self._record(
                work, attempt, started, str(exc) if known else f"{type(exc).__name__}: {exc}"
            )
            raise
        if attempt.failures:
            error = (
                f"{work.destination}: {attempt.failed} of {attempt.total + int(work.report)} "
                f"objects not stored; last failure: {attempt.failures[-1][1]}"
            )
            self._record(work, attempt, started, error)
            if attempt.permanent:
                raise PermanentJobError(error)
            raise WritebackFailed(error)

        log.info(
            "write-back to %s: %d instances%s sent for series %s",
            work.destination,
            attempt.sent,
            " and the report" if attempt.report_sent else "",
            work.series_uid,
            extra={"series_uid": work.series_uid},
        )

        def sent(session: Session) -> None:
            self._update(session, work, attempt, started, error=None, outcome="sent")

        return JobResult("sent", sent)

    # -- reading -----------------------------------------------------------------------------

    def _load(self, job: LeasedJob) -> Work | None:
        with self.db.session() as session:
            row = session.scalars(select(Writeback).where(Writeback.job_id == job.id)).first()
            if row is None:
                raise PermanentJobError(f"job {job.id} has no write-back record")
            series = session.get(Series, job.series_id)
            if series is None:
                raise PermanentJobError(f"series {job.series_id} no longer exists")
            if series.version != job.series_version:
                return None
            result = session.get(Result, row.result_id)
            if result is None:
                raise PermanentJobError(f"result {row.result_id} no longer exists")
            instances = [
                SpooledInstance(*r)
                for r in session.execute(
                    select(
                        Instance.sop_instance_uid,
                        Instance.sop_class_uid,
                        Instance.transfer_syntax_uid,
                        Instance.path,
                    )
                    .where(Instance.series_id == series.id)
                    .order_by(Instance.instance_number, Instance.id)
                )
            ]
            if not instances:
                raise PermanentJobError(
                    f"series {series.series_uid} has no instances in the spool (removed by "
                    "worker.spool_retention_days, or never stored)"
                )
            return Work(
                writeback_id=row.id,
                destination=row.destination,
                study_uid=series.study.study_uid,
                series_uid=series.series_uid,
                label=row.label,
                copies=row.copies_series_uid is not None,
                report=row.report_sop_uid is not None,
                uids=WritebackUids(
                    self.policy.uid_prefix,
                    series.series_uid,
                    job.series_version,
                    keep=row.uid_policy == "keep",
                ),
                finding=Finding(
                    label=row.label,  # a series in review is written as the network called it
                    probability=result.probability,
                    threshold=result.threshold,
                    model_name=result.model_name,
                    model_version=result.model_version,
                    aggregation=result.aggregation,
                    slices_used=result.slices_used,
                ),
                instances=instances,
            )

    # -- sending -----------------------------------------------------------------------------

    def _deliver(self, job: LeasedJob, work: Work, attempt: Attempt, started: datetime) -> None:
        contribution = Contribution(
            software_version=__version__,
            model_name=work.finding.model_name,
            model_version=work.finding.model_version,
            when=started,
            description=(
                "Contrast/Bolus attributes set from an automatic IV contrast classification: "
                f"{work.label} (probability {work.finding.probability:.3f}, confidence "
                f"{confidence(work.label, work.finding.probability):.3f}, threshold "
                f"{work.finding.threshold:g}); pixel data unchanged"
            ),
        )
        plan = CopyPlan(
            contrast_tags(self.policy, work.label),
            work.uids,
            self.policy.description_suffix,
            contribution,
        )
        spool = self.settings.spool_path
        with self._open(job.key, work) as sink:
            if work.copies:
                for instance in work.instances:
                    source = self._source(spool, instance)
                    attempt.add(
                        sink.put(
                            work.study_uid,
                            work.uids.copies_series_uid,
                            work.uids.copy_sop_uid(instance.sop_instance_uid),
                            partial(write_corrected_copy, source, plan=plan),
                        )
                    )
            if work.report:
                first = dcmread(self._source(spool, work.instances[0]), stop_before_pixels=True)
                report = build_report(
                    first,
                    [SourceInstance(i.sop_class_uid, i.sop_instance_uid) for i in work.instances],
                    work.finding,
                    work.uids,
                    __version__,
                    started,
                )
                attempt.add(
                    sink.put(
                        work.study_uid,
                        work.uids.report_series_uid,
                        work.uids.report_sop_uid,
                        lambda fh: _write_dataset(report, fh),
                    ),
                    is_report=True,
                )

    def _open(self, name: str, work: Work) -> AbstractContextManager[Destination]:
        """The job's destination (its key is the destination's name), opened by kind."""
        config = next((d for d in self.policy.destinations if d.name == name), None)
        if config is None:
            raise PermanentJobError(f"destination {name!r} is no longer configured")
        contexts = set()
        if work.copies:
            contexts = {(i.sop_class_uid, i.transfer_syntax_uid) for i in work.instances}
        if work.report:
            contexts.add((ComprehensiveSRStorage, ExplicitVRLittleEndian))
        outbound = Outbound(
            frozenset(contexts),
            self.settings.scp.ae_title,
            self.settings.data_dir / "writeback-staging",
        )
        return open_destination(config, outbound)

    @staticmethod
    def _source(spool: Path, instance: SpooledInstance) -> Path:
        path = spool / instance.path
        if not path.is_file():
            raise PermanentJobError(f"{path}: spooled instance is missing")
        return path

    # -- recording ---------------------------------------------------------------------------

    def _record(self, work: Work, attempt: Attempt, started: datetime, error: str) -> None:
        """A failed attempt's outcome; committed on its own, before the job is released."""
        with self.db.write() as session:
            self._update(session, work, attempt, started, error=error, outcome="failed")
        log.warning("write-back to %s failed: %s", work.destination, error)

    @staticmethod
    def _update(
        session: Session,
        work: Work,
        attempt: Attempt,
        started: datetime,
        *,
        error: str | None,
        outcome: str,
    ) -> None:
        row = session.get(Writeback, work.writeback_id, with_for_update=True)
        assert row is not None
        row.copies_series_uid = work.uids.copies_series_uid if work.copies else None
        row.report_series_uid = work.uids.report_series_uid if work.report else None
        row.report_sop_uid = work.uids.report_sop_uid if work.report else None
        row.instances_total = attempt.total
        row.instances_sent = attempt.sent
        row.report_sent = attempt.report_sent
        row.last_status = attempt.last_status
        row.failures = attempt.failures or None
        row.error = error
        row.outcome = outcome
        row.attempted_at = started
        if outcome == "sent":
            row.sent_at = utcnow()


def _write_dataset(ds: Dataset, fh: BinaryIO) -> CopiedInstance:
    ds.save_as(fh, enforce_file_format=True)
    return CopiedInstance(
        str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.file_meta.TransferSyntaxUID)
    )
