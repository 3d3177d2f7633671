"""``ivcontrast series``: received series with their state, newest call, skip reasons and errors.

The same list as ``GET /api/series`` and the dashboard's series page (the store's read
model): newest arrivals first, each series with its newest result; the filters mean the
same (``--label`` and ``--tag-status`` test the newest result). ``--label review`` lists the
series whose newest call waits for a person; CSV and JSON say why in a few words.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ivcontrast.commands import CommandError
from ivcontrast.commands.output import FORMATS, write_rows
from ivcontrast.commands.results import short_reasons
from ivcontrast.config import Settings
from ivcontrast.vocabulary import Label, TagStatus

if TYPE_CHECKING:
    from ivcontrast.store.read import SeriesRow

COLUMNS = [
    "series_uid",
    "modality",
    "description",
    "instances",
    "state",
    "version",
    "label",
    "last_received",
    "reason",
]
DETAIL_COLUMNS = [
    "study_uid",
    "accession",
    "first_received",
    "completed",
    "probability",
    "tag_status",
    "result_version",
    "network_label",
    "blood_hu",
    "why",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state", action="append", help="only series in this state (repeatable), e.g. failed"
    )
    parser.add_argument("--study", metavar="UID", help="only series of this StudyInstanceUID")
    parser.add_argument("--accession", metavar="NUMBER", help="only series of this study")
    parser.add_argument(
        "--label", choices=[str(x) for x in Label], help="label of the newest result"
    )
    parser.add_argument(
        "--tag-status", choices=[str(x) for x in TagStatus], help="of the newest result"
    )
    parser.add_argument(
        "--limit", type=int, default=100, help="newest N series (default 100; 0 = all)"
    )
    parser.add_argument("--format", choices=FORMATS, default="table")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ivcontrast.store import read
    from ivcontrast.store.db import Database
    from ivcontrast.store.models import SeriesState

    if args.limit < 0:
        raise CommandError(f"--limit {args.limit}: must be 0 (all) or more", exit_code=2)
    states = [str(x) for x in SeriesState]
    for state in args.state or ():
        if state not in states:
            # As the API: a mistyped state is an error, not an empty list.
            raise CommandError(f"--state {state}: expected one of {', '.join(states)}", 2)
    filt = read.SeriesFilter(
        states=args.state or (),
        label=args.label,
        tag_status=args.tag_status,
        study_uid=args.study,
        accession=args.accession,
    )
    db = Database(settings.db_url)
    try:
        db.upgrade()
        with db.session() as session:
            _, found = read.series_page(session, filt, args.limit or None)
            rows = [_row(r) for r in found]
    finally:
        db.dispose()
    columns = COLUMNS if args.format == "table" else [*COLUMNS, *DETAIL_COLUMNS]
    write_rows(rows, columns, args.format)
    return 0


def _row(row: SeriesRow) -> dict[str, Any]:
    s, result = row.series, row.result
    return {
        "series_uid": s.series_uid,
        "study_uid": row.study.study_uid,
        "accession": row.study.accession_number,
        "modality": s.modality,
        "description": s.series_description,
        "instances": s.instance_count,
        "state": s.state,
        "version": s.version,
        "label": result.label if result is not None else None,
        "first_received": s.first_received_at,
        "last_received": s.last_received_at,
        "completed": s.completed_at,
        "reason": s.skip_reason or s.error,
        "probability": result.probability if result is not None else None,
        "tag_status": result.tag_status if result is not None else None,
        "result_version": result.series_version if result is not None else None,
        "network_label": result.network_label if result is not None else None,
        "blood_hu": _whole(result.physics_hu) if result is not None else None,
        "why": short_reasons(result.review_reasons)
        if result is not None and result.label == Label.REVIEW
        else None,
    }


def _whole(hu: float | None) -> int | None:
    return None if hu is None else round(hu)
