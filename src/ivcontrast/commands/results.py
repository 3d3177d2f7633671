"""``ivcontrast results``: the contrast calls in the store, newest first, with filters.

By default each series' newest result version only (``--all-versions`` lists the calls of
re-opened series' earlier versions too). Times are ISO 8601 dates or date-times, UTC unless
they carry an offset; ``--since`` includes its time, ``--until`` excludes it (as the web API).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from ivcontrast.commands import CommandError
from ivcontrast.commands.output import FORMATS, write_rows
from ivcontrast.config import Settings
from ivcontrast.vocabulary import Label, TagStatus

LABELS = tuple(str(x) for x in Label)
TAG_STATUSES = tuple(str(x) for x in TagStatus)
# The table: what a person looking for a study needs; CSV and JSON add the rest.
COLUMNS = [
    "created",
    "accession",
    "series_description",
    "series_uid",
    "version",
    "label",
    "probability",
    "tag",
    "tag_status",
    "model",
]
DETAIL_COLUMNS = [
    "threshold",
    "slices_used",
    "seconds",
    "study_uid",
    "modality",
    "series_state",
    "aggregation",
    "model_name",
    "model_version",
    "model_sha256",
    "device",
    "load_seconds",
    "preprocess_seconds",
    "inference_seconds",
]
JSON_ONLY_COLUMNS = ["slice_probabilities"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", metavar="TIME", help="results from this time on (ISO 8601)")
    parser.add_argument("--until", metavar="TIME", help="results before this time (ISO 8601)")
    parser.add_argument("--label", choices=LABELS)
    parser.add_argument(
        "--disagree",
        action="store_true",
        help="only calls that the DICOM ContrastBolusAgent tag contradicts",
    )
    parser.add_argument(
        "--tag-status", choices=TAG_STATUSES, help="only calls whose tag is missing/agrees/..."
    )
    parser.add_argument("--study", metavar="UID", help="StudyInstanceUID")
    parser.add_argument("--series", metavar="UID", help="SeriesInstanceUID")
    parser.add_argument("--accession", metavar="NUMBER", help="AccessionNumber")
    parser.add_argument(
        "--all-versions", action="store_true", help="every result version of re-opened series"
    )
    parser.add_argument(
        "--limit", type=int, default=100, help="newest N results (default 100; 0 = all)"
    )
    parser.add_argument("--format", choices=FORMATS, default="table")


def parse_time(flag: str, value: str | None) -> datetime | None:
    """An ISO 8601 date or date-time as aware UTC; naive times are UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CommandError(
            f"{flag} {value!r}: expected an ISO 8601 date or date-time, e.g. 2024-05-01T08:00",
            exit_code=2,
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ivcontrast.store.db import Database
    from ivcontrast.store.read import ResultQuery, find_results

    if args.limit < 0:
        raise CommandError(f"--limit {args.limit}: must be 0 (all) or more", exit_code=2)
    if args.disagree and args.tag_status not in (None, TagStatus.DISAGREES):
        raise CommandError(f"--disagree and --tag-status {args.tag_status} exclude each other", 2)
    since, until = parse_time("--since", args.since), parse_time("--until", args.until)
    query = ResultQuery(
        label=args.label,
        tag_status=TagStatus.DISAGREES if args.disagree else args.tag_status,
        since=since,
        until=until,
        study_uid=args.study,
        series_uid=args.series,
        accession=args.accession,
        all_versions=args.all_versions,
        limit=args.limit or None,
    )
    db = Database(settings.db_url)
    try:
        db.upgrade()
        with db.session() as session:
            rows = [_row(r.result, r.series, r.study) for r in find_results(session, query)]
    finally:
        db.dispose()
    columns = COLUMNS if args.format == "table" else [*COLUMNS, *DETAIL_COLUMNS]
    if args.format == "json":
        columns = [*columns, *JSON_ONLY_COLUMNS]
    write_rows(rows, columns, args.format)
    return 0


def _row(result: Any, series: Any, study: Any) -> dict[str, Any]:
    return {
        "created": result.created_at,
        "series_uid": series.series_uid,
        "version": result.series_version,
        "label": result.label,
        "probability": result.probability,
        "threshold": result.threshold,
        "slices_used": result.slices_used,
        "tag": result.original_contrast_agent,
        "tag_status": result.tag_status,
        "model": f"{result.model_name} {result.model_version}",
        "seconds": result.total_seconds,
        "study_uid": study.study_uid,
        "accession": study.accession_number,
        "modality": series.modality,
        "series_description": series.series_description,
        "series_state": series.state,
        "aggregation": result.aggregation,
        "model_name": result.model_name,
        "model_version": result.model_version,
        "model_sha256": result.model_sha256,
        "device": result.device,
        "load_seconds": result.load_seconds,
        "preprocess_seconds": result.preprocess_seconds,
        "inference_seconds": result.inference_seconds,
        "slice_probabilities": result.slice_probabilities,
    }
