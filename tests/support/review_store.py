"""A store with the review state filled as the worker fills it: one series in review (the
network says contrast, the blood pool reads 41 HU) with files in the spool, and one confident
call whose physics opinion found no blood pool. For the API, dashboard and schema tests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from ivcontrast.store.db import Database
from ivcontrast.store.models import Instance, Result, Series, Study, utcnow
from tests.support.web_store import SLICE_MM, phantom_hu, uid, write_slice


@dataclass
class Review:
    """UIDs of the series ``add_review_series`` adds, and where the blood pool was drawn."""

    review: str  # in review: the network says contrast, the blood pool reads 41 HU
    not_found: str  # a confident contrast call whose physics opinion found no blood pool
    physics: dict[str, Any]
    reasons: list[str]


def add_review_series(
    db: Database, spool: Path, *, slices: int = 8, size: int = 128, now: datetime | None = None
) -> Review:
    """Two classified series with the review columns filled as the worker fills them; the
    review series has files, its physics opinion circling the phantom's aorta in slice 4."""
    now = now or utcnow()
    spacing = 500.0 / size
    zs = [-SLICE_MM * (slices - 1) + SLICE_MM * i for i in range(slices)]
    physics: dict[str, Any] = {
        "found": True,
        "contrast": False,
        "structure": "chest vessel (aorta or heart)",
        "hu": 41.3,
        "slice_index": 4,
        "z_mm": zs[4],
        "row": size / 2 + size * 0.03 + size * 0.08,  # phantom_hu's aorta
        "col": size / 2 + size * 0.04,
        "radius_mm": round(size * 0.04 * spacing, 1),
        "threshold_hu": 125.0,
        "reason": "median of 5 sampled slices, 25 mm along z",
    }
    reasons = [
        "the network says contrast, but the blood pool (chest vessel (aorta or heart)) reads "
        "41 HU, below 125 HU"
    ]
    not_found: dict[str, Any] = {
        "found": False,
        "contrast": None,
        "structure": None,
        "hu": None,
        "slice_index": None,
        "z_mm": None,
        "row": None,
        "col": None,
        "radius_mm": None,
        "threshold_hu": 125.0,
        "reason": "no blood pool found in 8 sampled slices (8 chest): no round vessel",
    }
    uids = []
    with db.write() as session:
        study = Study(study_uid=uid(), accession_number="ACC7100", study_date="20240104")
        session.add(study)
        session.flush()
        for number, (label, pool) in enumerate((("review", physics), ("contrast", not_found))):
            series = Series(
                series_uid=uid(),
                study_id=study.id,
                modality="CT",
                series_number=10 + number,
                series_description="REVIEW ME" if label == "review" else "NO POOL",
                state="classified",
                version=1,
                instance_count=slices,
                first_received_at=now - timedelta(minutes=3),
                last_received_at=now - timedelta(minutes=2 + number),
                completed_at=now - timedelta(minutes=1),
            )
            session.add(series)
            session.flush()
            for i, z in enumerate(zs if label == "review" else []):
                sop = uid()
                rel = f"{study.study_uid}/{series.series_uid}/{sop}.dcm"
                path = spool / rel
                hu = phantom_hu(size, i / (slices - 1), False, seed=700 + i)
                write_slice(
                    path,
                    study_uid=study.study_uid,
                    series_uid=series.series_uid,
                    sop_uid=sop,
                    index=i,
                    z=z,
                    hu=hu,
                    contrast_agent=None,
                )
                data = path.read_bytes()
                session.add(
                    Instance(
                        sop_instance_uid=sop,
                        series_id=series.id,
                        sop_class_uid=CTImageStorage,
                        transfer_syntax_uid=ExplicitVRLittleEndian,
                        path=rel,
                        size_bytes=len(data),
                        sha256=hashlib.sha256(data).hexdigest(),
                        received_at=now - timedelta(minutes=3),
                        instance_number=i + 1,
                        image_type="ORIGINAL\\PRIMARY\\AXIAL",
                        rows=size,
                        columns=size,
                        pixel_spacing=f"{spacing}\\{spacing}",
                        slice_thickness=SLICE_MM,
                        image_position=f"-250\\-250\\{z}",
                        image_orientation="1\\0\\0\\0\\1\\0",
                    )
                )
            session.add(
                Result(
                    series_id=series.id,
                    series_version=1,
                    model_name="ivcontrast-effnet-b0",
                    model_version="2.0.0",
                    probability=0.93,
                    label=label,
                    network_label="contrast",
                    review_reasons=reasons if label == "review" else [],
                    physics_label="no_contrast" if pool["found"] else None,
                    physics_hu=pool["hu"],
                    physics_structure=pool["structure"],
                    physics=pool,
                    physics_seconds=0.05,
                    threshold=0.5,
                    aggregation="mean",
                    slices_used=slices,
                    slice_probabilities=[[z, 0.93] for z in zs],
                    tag_status="missing",
                    total_seconds=0.6,
                    created_at=now - timedelta(minutes=1),
                )
            )
            uids.append(series.series_uid)
    return Review(uids[0], uids[1], physics, reasons)
