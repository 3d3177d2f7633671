"""``ivcontrast results``: the contrast calls in the store, newest first, with filters.

By default each series' newest result version only (``--all-versions`` lists the calls of
re-opened series' earlier versions too). Times are ISO 8601 dates or date-times, UTC unless
they carry an offset; ``--since`` includes its time, ``--until`` excludes it (as the web API).

``--label review`` lists the series a person has to look at. The table shows the blood pool's
HU and structure (the physics second opinion) and, for a series in review, why in a few
words; CSV and JSON carry the full reasons, the network's own call and the physics opinion.
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
    "blood_hu",
    "blood_pool",
    "why",
    "tag",
    "tag_status",
    "model",
]
DETAIL_COLUMNS = [
    "network_label",
    "review_reasons",
    "physics_label",
    "physics_hu",
    "physics_structure",
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
    "physics_seconds",
]
JSON_ONLY_COLUMNS = ["physics", "slice_probabilities"]
# Words for the table's "why" column: the start of each review reason (classifier.review).
SHORT_REASONS = (("probability ", "near threshold"), ("the network says ", "blood pool disagrees"))
SHORT_CHARS = 24


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
    if args.format == "csv":
        rows = [_flat(row) for row in rows]
    write_rows(rows, columns, args.format)
    return 0


def short_structure(structure: str | None) -> str | None:
    """The structure without its parenthesis ("chest vessel (aorta or heart)" -> "chest
    vessel"), for the table's width; CSV and JSON carry it whole."""
    if not structure:
        return None
    return structure.split(" (", 1)[0][:SHORT_CHARS]


def short_reasons(reasons: list[str] | None) -> str | None:
    """Why a series is in review, in a few words per reason ("near threshold", ...)."""
    words = []
    for reason in reasons or []:
        text = str(reason)
        short = next((w for start, w in SHORT_REASONS if text.startswith(start)), None)
        words.append(short or (text if len(text) <= SHORT_CHARS else text[: SHORT_CHARS - 1] + "…"))
    return ", ".join(words) or None


def _blood_pool(structure: str | None, physics: Any) -> str | None:
    """The structure in short; "not found" where the physics opinion looked and found none."""
    if structure:
        return short_structure(structure)
    if isinstance(physics, dict) and physics.get("found") is False:
        return "not found"
    return None


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells: the review reasons one after another, separated by "; "."""
    reasons = row.get("review_reasons")
    return row | {"review_reasons": "; ".join(reasons) if reasons else None}


def _row(result: Any, series: Any, study: Any) -> dict[str, Any]:
    return {
        "created": result.created_at,
        "series_uid": series.series_uid,
        "version": result.series_version,
        "label": result.label,
        "probability": result.probability,
        # Whole HU: the table's cell formatter gives floats three decimals.
        "blood_hu": None if result.physics_hu is None else round(result.physics_hu),
        "blood_pool": _blood_pool(result.physics_structure, result.physics),
        "why": short_reasons(result.review_reasons) if result.label == Label.REVIEW else None,
        "network_label": result.network_label,
        "review_reasons": list(result.review_reasons or []),
        "physics_label": result.physics_label,
        "physics_hu": result.physics_hu,
        "physics_structure": result.physics_structure,
        "physics": result.physics,
        "physics_seconds": result.physics_seconds,
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
