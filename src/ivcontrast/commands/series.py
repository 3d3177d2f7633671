"""``ivcontrast series``: received series with their state, skip reasons and errors."""

from __future__ import annotations

import argparse

from ivcontrast.commands.output import FORMATS, write_rows
from ivcontrast.config import Settings

COLUMNS = [
    "series_uid",
    "modality",
    "description",
    "instances",
    "state",
    "version",
    "last_received",
    "reason",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", action="append", help="only series in this state (repeatable)")
    parser.add_argument("--study", help="only series of this StudyInstanceUID")
    parser.add_argument(
        "--limit", type=int, default=100, help="newest N series (default 100; 0 = all)"
    )
    parser.add_argument("--format", choices=FORMATS, default="table")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from ivcontrast.store.db import Database
    from ivcontrast.store.models import Series, Study

    db = Database(settings.db_url)
    db.upgrade()
    query = (
        select(Series, Study.study_uid)
        .join(Study)
        .order_by(Series.last_received_at.desc(), Series.id.desc())
    )
    if args.state:
        query = query.where(Series.state.in_(args.state))
    if args.study:
        query = query.where(Study.study_uid == args.study)
    if args.limit:
        query = query.limit(args.limit)
    with db.session() as session:
        rows = [
            {
                "series_uid": s.series_uid,
                "study_uid": study_uid,
                "modality": s.modality,
                "description": s.series_description,
                "instances": s.instance_count,
                "state": s.state,
                "version": s.version,
                "first_received": s.first_received_at,
                "last_received": s.last_received_at,
                "completed": s.completed_at,
                "reason": s.skip_reason or s.error,
            }
            for s, study_uid in session.execute(query)
        ]
    db.dispose()
    columns = (
        COLUMNS
        if args.format == "table"
        else [*COLUMNS, "study_uid", "first_received", "completed"]
    )
    write_rows(rows, columns, args.format)
    return 0
