"""``ivcontrast writeback list|retry``: what was written back where, and another go for failures.

``list`` shows one row per write-back job (one destination, one result version) with its
queue state, what was sent and the last error. ``retry`` puts failed jobs back in the queue
with their attempts reset; a worker with write-back enabled sends them.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ivcontrast.commands import CommandError
from ivcontrast.commands.output import FORMATS, write_rows
from ivcontrast.config import Settings

if TYPE_CHECKING:
    from ivcontrast.store.read import WritebackRow

STATES = ("pending", "leased", "done", "failed")
COLUMNS = [
    "job",
    "state",
    "destination",
    "series_uid",
    "version",
    "label",
    "sent",
    "attempts",
    "last_status",
    "attempted",
    "error",
]
DETAIL_COLUMNS = [
    "outcome",
    "study_uid",
    "copies_series_uid",
    "report_series_uid",
    "report_sop_uid",
    "instances_total",
    "instances_sent",
    "report_sent",
    "max_attempts",
    "next_attempt",
    "created",
    "sent_at",
    "failures",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list write-back jobs, newest first")
    listing.add_argument("--state", action="append", choices=STATES, help="repeatable")
    listing.add_argument("--destination", help="only jobs for this destination name")
    listing.add_argument("--series", help="only jobs for this (original) SeriesInstanceUID")
    listing.add_argument("--limit", type=int, default=100, help="newest N (default 100; 0 = all)")
    listing.add_argument("--format", choices=FORMATS, default="table")
    retry = actions.add_parser("retry", help="queue failed write-back jobs again")
    retry.add_argument("job_ids", nargs="*", type=int, metavar="JOB_ID")
    retry.add_argument("--all-failed", action="store_true", help="every failed write-back job")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ivcontrast.store.db import Database

    db = Database(settings.db_url)
    db.upgrade()
    try:
        if args.action == "list":
            return _list(args, db)
        return _retry(args, db, settings)
    finally:
        db.dispose()


def _list(args: argparse.Namespace, db: Any) -> int:
    from ivcontrast.store import read

    filt = read.WritebackFilter(
        states=args.state or (), destination=args.destination, series_uid=args.series
    )
    with db.session() as session:
        _, found = read.writebacks_page(session, filt, args.limit or None)
        rows = [_row(r) for r in found]
    columns = COLUMNS if args.format == "table" else [*COLUMNS, *DETAIL_COLUMNS]
    write_rows(rows, columns, args.format)
    return 0


def _row(row: WritebackRow) -> dict[str, Any]:
    job, wb = row.job, row.writeback
    sent = f"{wb.instances_sent}/{wb.instances_total}" if wb.copies_series_uid else "-"
    if wb.report_sop_uid:
        sent += " +SR" if wb.report_sent else " -SR"
    return {
        "job": job.id,
        "state": job.state,
        "destination": wb.destination,
        "series_uid": row.series_uid,
        "version": job.series_version,
        "label": wb.label,
        "sent": sent,
        "attempts": f"{job.attempts}/{job.max_attempts}",
        "last_status": wb.last_status,
        "attempted": wb.attempted_at,
        # The job's error is the newest (it also covers expired leases); the row's the detail.
        "error": job.error or (wb.error if job.state != "done" else None),
        "outcome": wb.outcome,
        "study_uid": row.study_uid,
        "copies_series_uid": wb.copies_series_uid,
        "report_series_uid": wb.report_series_uid,
        "report_sop_uid": wb.report_sop_uid,
        "instances_total": wb.instances_total,
        "instances_sent": wb.instances_sent,
        "report_sent": wb.report_sent,
        "max_attempts": job.max_attempts,
        "next_attempt": job.available_at if job.state == "pending" else None,
        "created": wb.created_at,
        "sent_at": wb.sent_at,
        "failures": wb.failures,
    }


def _retry(args: argparse.Namespace, db: Any, settings: Settings) -> int:
    from sqlalchemy import select

    from ivcontrast.store.models import Job, JobState, utcnow
    from ivcontrast.writeback import WRITEBACK

    if bool(args.job_ids) == bool(args.all_failed):
        raise CommandError("give JOB_ID... or --all-failed (one of them)", exit_code=2)
    with db.write() as session:
        query = select(Job).where(Job.kind == WRITEBACK).with_for_update()
        if args.all_failed:
            query = query.where(Job.state == JobState.FAILED)
        else:
            query = query.where(Job.id.in_(args.job_ids))
        found = {job.id: job for job in session.scalars(query)}
        for job_id in args.job_ids:
            job = found.get(job_id)
            if job is None:
                raise CommandError(f"job {job_id}: no such write-back job")
            if job.state != JobState.FAILED:
                raise CommandError(f"job {job_id}: not failed (it is {job.state})")
        now = utcnow()
        for job in found.values():
            job.state = JobState.PENDING
            job.attempts = 0
            job.available_at = now
            job.error = None
            job.outcome = None
            job.finished_at = None
    print(f"{len(found)} write-back job(s) queued again")
    if found and not settings.writeback.enabled:
        print(
            "note: write-back is disabled; the jobs wait until a worker runs with it enabled",
            file=sys.stderr,
        )
    return 0
