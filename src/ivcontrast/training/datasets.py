"""Labelled series: what ``ivcontrast train`` and ``ivcontrast evaluate`` read.

Two CSV layouts are understood, told apart by their header:

- a labels CSV with the columns ``path`` (a DICOM folder, a DICOM file, a NIfTI or NRRD file;
  relative paths are relative to the CSV's folder), ``label`` (``1``/``0``, ``contrast``/
  ``no_contrast``, ``yes``/``no``, ``true``/``false``), ``patient_id`` (the split keeps each
  patient on one side), and optionally ``region``, ``phase`` and ``weight`` (how much more
  often than a phantom or an unweighted row its slices are drawn in training: a site's few
  real series beside hundreds of phantoms; default 1);
- the manifest of ``ivcontrast synth`` (``folder``, ``contrast``, ``patient_id``, ``region``,
  ``phase``...): series folders are looked up next to the manifest, so a generated set can be
  moved as a whole. Rows of localizers and non-CT series (not what the classifier is given)
  are left out with a warning.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

POSITIVE = {"1", "contrast", "yes", "true", "y", "c+", "iv"}
NEGATIVE = {"0", "no_contrast", "no-contrast", "non-contrast", "noncontrast", "no", "false", "n"}
LABELS_COLUMNS = ("path", "label", "patient_id")
MANIFEST_COLUMNS = ("folder", "contrast", "patient_id")


class DatasetError(ValueError):
    """A labels file cannot be used; the message names the file, line and reason."""


@dataclass(frozen=True)
class LabelledSeries:
    """One series (or volume) with its label."""

    path: Path
    contrast: bool
    patient_id: str
    region: str = ""
    phase: str = ""
    origin: str = ""  # "<csv>:<line>", for messages
    weight: float = 1.0  # relative sampling weight of its slices in training

    @property
    def label(self) -> int:
        return int(self.contrast)


def parse_label(value: str) -> bool:
    """True for contrast, False for none; ValueError for anything else."""
    text = value.strip().lower()
    if text in POSITIVE:
        return True
    if text in NEGATIVE:
        return False
    raise ValueError(f"label {value!r}: expected 1/0, contrast/no_contrast, yes/no or true/false")


def read_labels(path: str | os.PathLike[str]) -> list[LabelledSeries]:
    """The series listed in a labels CSV or a synth manifest (see the module docstring)."""
    csv_path = Path(path)
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]
    except FileNotFoundError:
        raise DatasetError(f"{csv_path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{csv_path}: cannot read it as CSV: {exc}") from exc
    if all(c in columns for c in LABELS_COLUMNS):
        items = [_labels_row(csv_path, n, row) for n, row in enumerate(rows, start=2)]
    elif all(c in columns for c in MANIFEST_COLUMNS):
        items = []
        skipped: Counter[str] = Counter()
        for n, row in enumerate(rows, start=2):
            kind = (row.get("kind") or "axial", row.get("sop_class") or "ct")
            if kind != ("axial", "ct"):
                skipped["/".join(kind)] += 1
                continue
            items.append(_manifest_row(csv_path, n, row))
        if skipped:
            log.warning(
                "%s: left out %s (not axial CT)",
                csv_path,
                ", ".join(f"{v} {k}" for k, v in sorted(skipped.items())),
            )
    else:
        raise DatasetError(
            f"{csv_path}: expected the columns {', '.join(LABELS_COLUMNS)} (labels CSV) or "
            f"{', '.join(MANIFEST_COLUMNS)} (synth manifest); found {', '.join(columns) or 'none'}"
        )
    if not items:
        raise DatasetError(f"{csv_path}: no series listed")
    return items


def read_datasets(paths: Iterable[str | os.PathLike[str]]) -> list[LabelledSeries]:
    """All series of several CSVs; the same series listed twice is an error."""
    items: list[LabelledSeries] = []
    seen: dict[Path, str] = {}
    for path in paths:
        for item in read_labels(path):
            key = item.path.resolve()
            if key in seen:
                raise DatasetError(f"{item.origin}: {item.path} is already listed at {seen[key]}")
            seen[key] = item.origin
            items.append(item)
    return items


def _labels_row(csv_path: Path, line: int, row: dict[str, str]) -> LabelledSeries:
    where = f"{csv_path}:{line}"
    raw_path = row["path"].strip()
    patient = row["patient_id"].strip()
    if not raw_path:
        raise DatasetError(f"{where}: empty path")
    if not patient:
        raise DatasetError(f"{where}: empty patient_id (the split keeps patients on one side)")
    path = Path(raw_path)
    if not path.is_absolute():
        path = csv_path.parent / path
    if not path.exists():
        raise DatasetError(f"{where}: {path} does not exist")
    try:
        contrast = parse_label(row["label"])
    except ValueError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    return LabelledSeries(
        path=path,
        contrast=contrast,
        patient_id=patient,
        region=row.get("region", "").strip(),
        phase=row.get("phase", "").strip(),
        origin=where,
        weight=_weight(where, row.get("weight", "")),
    )


def _weight(where: str, text: str) -> float:
    if not text.strip():
        return 1.0
    try:
        weight = float(text)
    except ValueError:
        raise DatasetError(f"{where}: weight {text!r} is not a number") from None
    if not 0 < weight <= 1000:
        raise DatasetError(f"{where}: weight {weight:g} not in (0, 1000]")
    return weight


def _manifest_row(csv_path: Path, line: int, row: dict[str, str]) -> LabelledSeries:
    where = f"{csv_path}:{line}"
    folder = Path(row["folder"].strip())
    # synth writes each series folder next to its manifest; the recorded path may be relative
    # to wherever synth ran.
    candidates = [csv_path.parent / folder.name, folder]
    path = next((p for p in candidates if p.is_dir()), None)
    if path is None:
        raise DatasetError(f"{where}: series folder {folder.name!r} not found next to the manifest")
    try:
        contrast = parse_label(row["contrast"])
    except ValueError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    return LabelledSeries(
        path=path,
        contrast=contrast,
        patient_id=row["patient_id"].strip() or f"series:{folder.name}",
        region=row.get("region", "").strip(),
        phase=row.get("phase", "").strip(),
        origin=where,
    )


def summarise(items: Sequence[Any]) -> dict[str, Any]:
    """Counts of series, patients, classes, regions and phases (for cards and logs).

    ``items`` are ``LabelledSeries`` or anything with ``contrast``, ``patient_id``, ``region``
    and ``phase`` attributes.
    """
    by_region: dict[str, dict[str, int]] = {}
    by_phase: Counter[str] = Counter()
    for item in items:
        region = item.region or "unknown"
        cls = "contrast" if item.contrast else "no_contrast"
        by_region.setdefault(region, {"contrast": 0, "no_contrast": 0})[cls] += 1
        by_phase[item.phase or ("unknown" if item.contrast else "none")] += 1
    return {
        "series": len(items),
        "patients": len({item.patient_id for item in items}),
        "contrast": sum(1 for item in items if item.contrast),
        "no_contrast": sum(1 for item in items if not item.contrast),
        "by_region": dict(sorted(by_region.items())),
        "by_phase": dict(sorted(by_phase.items())),
    }
