"""Thumbnails of representative slices in a soft-tissue window, as PNG.

The slices are chosen from the indexed headers (no file opened): single-frame images sorted
along the slice normal, one from the middle of each of ``count`` equal stretches of the
series. Only the chosen files are decoded.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ivcontrast.classifier.dicom_series import DicomSeries
from ivcontrast.classifier.errors import VolumeError
from ivcontrast.store.models import Instance

log = logging.getLogger(__name__)

# Soft-tissue window: enhancing vessels and organs stand out from unenhanced ones.
WINDOW_CENTER_HU = 40.0
WINDOW_WIDTH_HU = 400.0


class ThumbnailError(Exception):
    """The slice cannot be shown (missing or undecodable file); the message says why."""


@dataclass(frozen=True)
class Slice:
    sop_instance_uid: str
    path: str
    sha256: str
    instance_number: int | None
    z_mm: float | None


@dataclass(frozen=True)
class Geometry:
    slices: list[Slice]
    normal: tuple[float, float, float] | None


def _floats(text: str | None, count: int) -> np.ndarray | None:
    if not text:
        return None
    try:
        values = np.array([float(v) for v in text.split("\\")], dtype=np.float64)
    except ValueError:
        return None
    return values if values.size == count and np.all(np.isfinite(values)) else None


def sorted_slices(instances: Sequence[Instance]) -> Geometry:
    """Single-frame images of a series along the slice normal (by instance number if unknown)."""
    images = [
        i for i in instances if i.rows and i.columns and (i.number_of_frames or 1) == 1 and i.path
    ]
    normal: np.ndarray | None = None
    for inst in images:
        orientation = _floats(inst.image_orientation, 6)
        if orientation is not None:
            cross = np.cross(orientation[:3], orientation[3:])
            norm = float(np.linalg.norm(cross))
            if norm > 0.5:
                normal = cross / norm
                break
    slices = []
    for inst in images:
        position = _floats(inst.image_position, 3)
        z = float(position @ normal) if position is not None and normal is not None else None
        slices.append(Slice(inst.sop_instance_uid, inst.path, inst.sha256, inst.instance_number, z))
    # Slices with a position first, by z; the rest after them, by instance number.
    slices.sort(
        key=lambda s: (
            s.z_mm is None,
            s.z_mm if s.z_mm is not None else 0.0,
            s.instance_number if s.instance_number is not None else 0,
            s.sop_instance_uid,
        )
    )
    as_tuple = None if normal is None else (float(normal[0]), float(normal[1]), float(normal[2]))
    return Geometry(slices, as_tuple)


def representative(slices: Sequence[Slice], count: int) -> list[Slice]:
    """One slice from the middle of each of ``count`` equal stretches, in order along z."""
    n = len(slices)
    if n <= count:
        return list(slices)
    picks = sorted({min(n - 1, int((k + 0.5) * n / count)) for k in range(count)})
    return [slices[i] for i in picks]


def resolve(spool: Path, relative: str) -> Path:
    """The file of an instance; a path that leaves the spool is refused."""
    root = spool.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ThumbnailError(f"{relative}: outside the spool")
    return path


def render_png(path: Path, size: int) -> bytes:
    """The slice at ``path`` in the soft-tissue window, at most ``size`` pixels a side.

    Decoded by the classifier's reader, so the picture shows the HU (rescale, padding) and
    the in-plane orientation the model saw.
    """
    if not path.is_file():
        raise ThumbnailError(f"{path.name}: file not found in the spool")
    try:
        hu = DicomSeries.open([path]).read([0])[0]
    except VolumeError as exc:
        raise ThumbnailError(str(exc)) from None
    low = WINDOW_CENTER_HU - WINDOW_WIDTH_HU / 2
    grey = np.clip((hu - low) * (255.0 / WINDOW_WIDTH_HU), 0, 255).astype(np.uint8)
    image = Image.fromarray(grey)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
