"""Thumbnails of representative slices in a soft-tissue window, as PNG.

The slices are chosen from the indexed headers (no file opened): single-frame images sorted
along the slice normal, one from the middle of each of ``count`` equal stretches of the
series. Only the chosen files are decoded.

The physics opinion's slice (``physics_slice``) is found the same way, by its position, and
``render_marked_png`` draws the blood pool on it: a circle of the measured radius at the
measured centre, in the canonical orientation both the classifier and these pictures use.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ivcontrast.classifier.dicom_series import DicomSeries
from ivcontrast.classifier.errors import VolumeError
from ivcontrast.store.models import Instance

log = logging.getLogger(__name__)

# Soft-tissue window: enhancing vessels and organs stand out from unenhanced ones.
WINDOW_CENTER_HU = 40.0
WINDOW_WIDTH_HU = 400.0
MARK_COLOUR = (255, 190, 0)  # amber: visible on grey, not the red of an error
MIN_MARK_PX = 4.0
# The physics opinion's z is rounded to 0.01 mm; neighbouring slices lie >= 0.5 mm apart.
SAME_SLICE_MM = 0.25


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


def physics_slice(geometry: Geometry, z_mm: float | None, index: int | None) -> Slice | None:
    """The slice the physics opinion measured: by its position ``z_mm`` along the classifier's
    slice normal (signed toward its largest component, see ``classifier.volume.slice_normal``),
    else by ``index`` in the sorted series when the headers give no positions."""
    slices = geometry.slices
    if z_mm is not None and geometry.normal is not None:
        normal = geometry.normal
        sign = 1.0 if normal[int(np.argmax(np.abs(normal)))] >= 0 else -1.0
        placed = [s for s in slices if s.z_mm is not None]
        if placed:
            nearest = min(placed, key=lambda s: abs(sign * (s.z_mm or 0.0) - z_mm))
            return nearest if abs(sign * (nearest.z_mm or 0.0) - z_mm) <= SAME_SLICE_MM else None
    if index is not None and 0 <= index < len(slices):
        return slices[index]
    return None


def _windowed(path: Path) -> tuple[Image.Image, tuple[float, float]]:
    """The slice at ``path`` in the soft-tissue window, and its (row, column) spacing in mm.

    Decoded by the classifier's reader, so the picture shows the HU (rescale, padding) and
    the in-plane orientation the model and the physics opinion saw.
    """
    if not path.is_file():
        raise ThumbnailError(f"{path.name}: file not found in the spool")
    try:
        series = DicomSeries.open([path])
        hu = series.read([0])[0]
    except VolumeError as exc:
        raise ThumbnailError(str(exc)) from None
    low = WINDOW_CENTER_HU - WINDOW_WIDTH_HU / 2
    grey = np.clip((hu - low) * (255.0 / WINDOW_WIDTH_HU), 0, 255).astype(np.uint8)
    return Image.fromarray(grey), series.geometry.pixel_spacing


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def render_png(path: Path, size: int) -> bytes:
    """The slice at ``path`` in the soft-tissue window, at most ``size`` pixels a side."""
    image, _ = _windowed(path)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return _png(image)


def render_marked_png(path: Path, size: int, row: float, col: float, radius_mm: float) -> bytes:
    """As ``render_png``, with a circle of ``radius_mm`` around pixel (``row``, ``col``)."""
    image, (row_mm, col_mm) = _windowed(path)
    width, height = image.size
    image = image.convert("RGB")
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    sx, sy = image.size[0] / width, image.size[1] / height
    x, y = (col + 0.5) * sx, (row + 0.5) * sy  # pixel centres
    rx = max(MIN_MARK_PX, radius_mm / col_mm * sx)
    ry = max(MIN_MARK_PX, radius_mm / row_mm * sy)
    line = max(1, round(min(image.size) / 128))
    ImageDraw.Draw(image).ellipse((x - rx, y - ry, x + rx, y + ry), outline=MARK_COLOUR, width=line)
    return _png(image)
