"""The manifest: one CSV row per generated series with its label and every parameter."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# Leading columns, in this order; every other plan field follows alphabetically.
LEADING = (
    "folder",
    "files",
    "contrast",
    "phase",
    "region",
    "tag_state",
    "tag_value",
    "study_uid",
    "series_uid",
    "seed",
    "anatomy_seed",
)


def write_manifest(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``rows`` (dicts) as CSV; the columns are the union of the rows' keys."""
    rows = list(rows)
    keys: set[str] = set()
    for row in rows:
        keys.update(row)
    columns = [k for k in LEADING if k in keys] + sorted(keys.difference(LEADING))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in columns})
    return out


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return ""
    return value
