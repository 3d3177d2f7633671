"""``ivcontrast classify PATH...``: contrast calls for DICOM folders and files, NIfTI and NRRD.

Folders are searched recursively; DICOM files are grouped by SeriesInstanceUID wherever they
lie, so a folder tree may hold many series (and one series may span the paths given). Series
the node would not classify (not CT, localizers, derived images, too few slices) are listed
as skipped with the reason, unless ``--all-series``. Files in folders that are not DICOM are
ignored; anything that cannot be read is reported with the file and the reason, and the rest
go on. The exit status is 1 when any input failed.

The same pipeline as the node (``classifier.pipeline``): the series ahead are read and
preprocessed in threads while the network runs on the current one.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivcontrast.commands import CommandError
from ivcontrast.commands.output import FORMATS, write_rows
from ivcontrast.config import Settings
from ivcontrast.vocabulary import DEVICES

if TYPE_CHECKING:
    from ivcontrast.classifier.engine import Classifier
    from ivcontrast.classifier.pipeline import PreparedSeries, SeriesCall

COLUMNS = [
    "source",
    "series_uid",
    "status",
    "label",
    "probability",
    "blood_hu",
    "threshold",
    "slices_used",
    "tag",
    "tag_status",
    "model_version",
    "seconds",
    "reason",
]
DETAIL_COLUMNS = [
    "slices_total",
    "aggregation",
    "model_name",
    "model_sha256",
    "backend",
    "load_seconds",
    "preprocess_seconds",
    "inference_seconds",
    "network_label",
    "physics_label",
    "physics_structure",
    "physics_seconds",
]
JSON_ONLY_COLUMNS = ["slice_probabilities", "physics", "review_reasons"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="DICOM folder or files, NIfTI or NRRD files"
    )
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("-o", "--output", type=Path, help="write the rows to FILE, not stdout")
    parser.add_argument("--device", dest="classifier.device", choices=DEVICES, default=None)
    parser.add_argument(
        "--model", dest="classifier.model", metavar="PKG", default=None, help="model package"
    )
    parser.add_argument(
        "--threads", dest="classifier.threads", type=int, default=None, help="CPU inference threads"
    )
    parser.add_argument(
        "--batch-size", dest="classifier.batch_size", type=int, default=None, metavar="N"
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=0,
        metavar="N",
        help="threads reading and preprocessing series ahead of the network "
        "(default: 1 on the CPU, up to 8 with CUDA)",
    )
    parser.add_argument(
        "--all-series",
        action="store_true",
        help="also classify series the node skips (localizers, derived, too few slices)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


@dataclass
class Item:
    """One thing to classify: a volume file, or the DICOM files of one series."""

    source: str
    series_uid: str | None = None
    files: list[Path] = field(default_factory=list)
    volume: bool = False
    modality: str | None = None
    description: str | None = None
    headers: list[Any] = field(default_factory=list)  # store.values.InstanceHeader


@dataclass
class Found:
    items: list[Item]
    failures: list[dict[str, Any]]
    ignored: int  # files in folders that are not DICOM


def _failure(source: str, reason: str, series_uid: str | None = None) -> dict[str, Any]:
    return {"source": source, "series_uid": series_uid, "status": "failed", "reason": reason}


def find_inputs(paths: Sequence[str]) -> Found:
    """Volumes and DICOM series under ``paths``, in the order given."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from ivcontrast.classifier.sources import volume_kind
    from ivcontrast.scp.header import instance_header

    items: list[Item] = []
    series: dict[str, Item] = {}
    failures: list[dict[str, Any]] = []
    ignored = 0
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(x.startswith(".") for x in p.relative_to(path).parts)
            )
            named = False
        elif path.is_file():
            files, named = [path], True
        else:
            failures.append(_failure(raw, "no such file or folder"))
            continue
        for file in files:
            if volume_kind(file) != "dicom":
                items.append(Item(str(file), volume=True, files=[file]))
                continue
            try:
                ds = pydicom.dcmread(file, stop_before_pixels=True)
                header = instance_header(ds, str(ds.file_meta.TransferSyntaxUID))
            except InvalidDicomError:
                if named:
                    failures.append(_failure(str(file), "not a DICOM, NIfTI or NRRD file"))
                else:
                    ignored += 1
                continue
            except Exception as exc:  # pydicom raises many types on a damaged file
                failures.append(_failure(str(file), f"cannot read the DICOM header: {exc}"))
                continue
            # Files without a SeriesInstanceUID (badly anonymised) form one series per folder.
            key = header.series_uid or f"folder:{file.parent}"
            item = series.get(key)
            if item is None:
                item = Item(
                    "",
                    series_uid=header.series_uid or None,
                    modality=header.modality,
                    description=header.series_description,
                )
                series[key] = item
                items.append(item)
            item.files.append(file)
            # Anonymised files may keep their SOP class in the file meta only.
            sop_class = header.sop_class_uid or str(ds.file_meta.get("MediaStorageSOPClassUID", ""))
            item.headers.append(dataclasses.replace(header, sop_class_uid=sop_class))
    for item in series.values():
        folders = {str(f.parent) for f in item.files}
        item.source = folders.pop() if len(folders) == 1 else os.path.commonpath(item.files)
    return Found(items, failures, ignored)


def prepare_item(classifier: Classifier, item: Item) -> PreparedSeries:
    """Open and preprocess one item (any thread). Raises ClassifierError naming the file."""
    from ivcontrast.classifier.pipeline import prepare_dicom, prepare_volume

    if item.volume:
        return prepare_volume(classifier, item.files[0])
    return prepare_dicom(classifier, item.files, series_uid=item.series_uid)


def call_row(item: Item, call: SeriesCall) -> dict[str, Any]:
    """A call as this command's row: ``SeriesCall``'s fields, and ``seconds`` for the total."""
    return call.to_dict() | {
        "source": item.source,
        "series_uid": item.series_uid,
        "status": "classified",
        "seconds": call.total_seconds,
        "slice_probabilities": [[z, round(p, 6)] for z, p in call.slice_probabilities],
        # the blood pool's HU (the physics opinion); why a series is in review
        "blood_hu": None if call.physics_hu is None else round(call.physics_hu),
        "reason": "; ".join(call.review_reasons) or None,
    }


def _eligible(
    found: Found, settings: Settings, all_series: bool
) -> tuple[list[Item], list[dict[str, Any]]]:
    """The items to classify, and a row for each series the node would skip (with why)."""
    from ivcontrast.worker.eligibility import EligibilityRule, skip_reason

    rule = EligibilityRule(settings.worker.min_slices, settings.worker.classify_derived)
    todo: list[Item] = []
    skipped: list[dict[str, Any]] = []
    for item in found.items:
        reason = None
        if not item.volume and not all_series:
            reason = skip_reason(item.modality, item.description, item.headers, rule)
        if reason is None:
            todo.append(item)
        else:
            skipped.append(
                {
                    "source": item.source,
                    "series_uid": item.series_uid,
                    "status": "skipped",
                    "reason": reason,
                }
            )
    return todo, skipped


def _classify_all(
    classifier: Classifier, todo: list[Item], jobs: int, quiet: bool
) -> tuple[list[dict[str, Any]], int]:
    """A row per item (classified or failed), in order, and the slices through the network.

    The next items are read and preprocessed in threads while the network runs on this one.
    """
    from tqdm import tqdm

    from ivcontrast.classifier.errors import ClassifierError
    from ivcontrast.classifier.pipeline import classify, prepare_ahead

    plan = classifier.backend.prefetch
    threads, depth = plan.threads, plan.depth
    if jobs:
        threads, depth = jobs, jobs + (plan.depth - plan.threads)
    rows: list[dict[str, Any]] = []
    inferred = 0
    with tqdm(total=len(todo), unit="series", file=sys.stderr, disable=quiet) as bar:
        for item, future in prepare_ahead(
            todo, lambda i: prepare_item(classifier, i), threads, depth
        ):
            try:
                call = classify(classifier, future.result())
            except ClassifierError as exc:
                rows.append(_failure(item.source, str(exc), item.series_uid))
                bar.write(f"ivcontrast classify: {exc}", file=sys.stderr)
            else:
                inferred += call.slices_used
                rows.append(call_row(item, call))
            bar.update()
    return rows, inferred


def _write(rows: list[dict[str, Any]], fmt: str, output: Path | None) -> None:
    columns = COLUMNS if fmt == "table" else [*COLUMNS, *DETAIL_COLUMNS]
    if fmt == "json":
        columns = [*columns, *JSON_ONLY_COLUMNS]
    if output is None:
        write_rows(rows, columns, fmt)
        return
    try:
        with output.open("w", encoding="utf-8", newline="") as out:
            write_rows(rows, columns, fmt, out)
    except OSError as exc:
        raise CommandError(f"{output}: cannot write: {exc.strerror}") from exc


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ivcontrast.classifier.engine import Classifier
    from ivcontrast.classifier.errors import ClassifierError

    if args.jobs < 0:
        raise CommandError(f"--jobs {args.jobs}: must be 0 (automatic) or more", exit_code=2)
    t_load = time.perf_counter()
    try:
        classifier = Classifier.from_settings(settings.classifier)
    except ClassifierError as exc:
        raise CommandError(str(exc)) from exc
    load_s = time.perf_counter() - t_load

    t0 = time.perf_counter()
    found = find_inputs(args.paths)
    scan_s = time.perf_counter() - t0
    rows: list[dict[str, Any]] = list(found.failures)
    for row in found.failures:
        print(f"ivcontrast classify: {row['source']}: {row['reason']}", file=sys.stderr)
    todo, skipped = _eligible(found, settings, args.all_series)
    rows.extend(skipped)
    if not found.items and not found.failures:
        raise CommandError(f"{', '.join(args.paths)}: no DICOM series, NIfTI or NRRD found")

    t1 = time.perf_counter()
    classified, inferred = _classify_all(classifier, todo, args.jobs, args.quiet)
    rows.extend(classified)
    pipeline_s = time.perf_counter() - t1
    _write(rows, args.format, args.output)

    counts = {s: sum(r["status"] == s for r in rows) for s in ("classified", "skipped", "failed")}
    elapsed = scan_s + pipeline_s
    print(
        f"classified {counts['classified']} series, {counts['skipped']} skipped, "
        f"{counts['failed']} failed in {elapsed:.2f} s (finding series {scan_s:.2f} s, "
        f"pipeline {pipeline_s:.2f} s; model loaded in {load_s:.2f} s before): "
        f"{inferred} slices through the network, {inferred / max(elapsed, 1e-9):.1f} slices/s"
        + (f"; {found.ignored} files that are not DICOM ignored" if found.ignored else ""),
        file=sys.stderr,
    )
    return 1 if counts["failed"] else 0
