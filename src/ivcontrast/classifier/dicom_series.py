"""A DICOM CT series as a ``SliceSource``: headers first, pixels only for the slices asked for.

``DicomSeries.open(paths)`` reads every header with ``stop_before_pixels``, checks that the files
form one stack (one frame each, same matrix, orientation and pixel spacing), and sorts them by
ImagePositionPatient projected on the slice normal (never by InstanceNumber). ``read(indices)``
then decodes only those slices: uncompressed little-endian pixel data straight from the
PixelData bytes (7x faster than ``ds.pixel_array`` here, see FACTS.md), anything else through
pydicom's pixel handlers and the pylibjpeg plugins (JPEG lossless, JPEG-LS, JPEG 2000, RLE).
Stored values become HU with each slice's RescaleSlope/RescaleIntercept; PixelPaddingValue
(and PixelPaddingRangeLimit) become air.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from ivcontrast.classifier.errors import VolumeError
from ivcontrast.classifier.volume import AIR_HU, Geometry, InPlane, slice_normal

log = logging.getLogger(__name__)

_NATIVE_LITTLE_ENDIAN = {
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
}
_HEADER_TAGS = [
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "ContrastBolusAgent",
    "InstanceNumber",
    "AcquisitionNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "NumberOfFrames",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
]
# Positions closer than this along the normal are the same slice.
_SAME_POSITION_MM = 0.01
# Orientation cosines and pixel spacings must agree this well across a series.
_ORIENTATION_TOLERANCE = 1e-3
_SPACING_TOLERANCE_MM = 1e-3


@dataclass(frozen=True, eq=False)
class SliceHeader:
    """What decoding one file needs, taken from its header."""

    path: Path
    sop_instance_uid: str
    instance_number: int | None
    position: np.ndarray  # ImagePositionPatient (3,)
    transfer_syntax: UID
    bits_allocated: int
    bits_stored: int
    signed: bool
    slope: float
    intercept: float
    padding: tuple[int, int] | None  # inclusive range of stored values that are padding


def _number(ds: Dataset, keyword: str, default: float | None = None) -> float | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    return float(value)


def _to_stored_domain(value: Any, bits: int, signed: bool) -> int:
    """A padding value as the stored pixel type reads it (US/SS is ambiguous in implicit VR)."""
    if isinstance(value, bytes):
        value = int.from_bytes(value[:2], "little", signed=signed)
    value = int(value)
    if signed and value >= 2 ** (bits - 1):
        value -= 2**bits
    elif not signed and value < 0:
        value += 2**bits
    return value


def _read_header(path: Path) -> tuple[Dataset, SliceHeader]:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise VolumeError(f"{path}: not a readable DICOM file: {exc}") from exc
    missing = [
        kw
        for kw in (
            "ImagePositionPatient",
            "ImageOrientationPatient",
            "PixelSpacing",
            "Rows",
            "Columns",
        )
        if ds.get(kw) in (None, "")
    ]
    if missing:
        raise VolumeError(f"{path}: missing {', '.join(missing)}")
    frames = int(_number(ds, "NumberOfFrames", 1) or 1)
    if frames != 1:
        raise VolumeError(f"{path}: {frames} frames; only single-frame images are supported")
    samples = int(_number(ds, "SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise VolumeError(f"{path}: {samples} samples per pixel; CT images have 1")
    bits_allocated = int(_number(ds, "BitsAllocated", 16) or 16)
    bits_stored = int(_number(ds, "BitsStored", bits_allocated) or bits_allocated)
    signed = int(_number(ds, "PixelRepresentation", 0) or 0) == 1
    padding = None
    if ds.get("PixelPaddingValue") is not None:
        lo = _to_stored_domain(ds.PixelPaddingValue, bits_allocated, signed)
        hi = lo
        if ds.get("PixelPaddingRangeLimit") is not None:
            hi = _to_stored_domain(ds.PixelPaddingRangeLimit, bits_allocated, signed)
        padding = (min(lo, hi), max(lo, hi))
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = (
        UID(str(meta.TransferSyntaxUID)) if meta and "TransferSyntaxUID" in meta else None
    )
    if transfer_syntax is None:
        raise VolumeError(f"{path}: no transfer syntax in the file meta information")
    number = _number(ds, "InstanceNumber")
    header = SliceHeader(
        path=path,
        sop_instance_uid=str(ds.get("SOPInstanceUID") or path),
        instance_number=None if number is None else int(number),
        position=np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64),
        transfer_syntax=transfer_syntax,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        signed=signed,
        slope=float(_number(ds, "RescaleSlope", 1.0) or 1.0),
        intercept=float(_number(ds, "RescaleIntercept", 0.0) or 0.0),
        padding=padding,
    )
    return ds, header


class DicomSeries:
    """One DICOM series, sorted along its slice normal; decodes slices on ``read``."""

    def __init__(
        self,
        headers: Sequence[SliceHeader],
        geometry: Geometry,
        inplane: InPlane,
        rows_cols: tuple[int, int],
        attributes: dict[str, str | None],
        duplicates: int,
    ) -> None:
        self.headers = tuple(headers)
        self._geometry = geometry
        self._inplane = inplane
        self._rows_cols = rows_cols
        self.attributes = attributes
        self.duplicates = duplicates

    @property
    def geometry(self) -> Geometry:
        return self._geometry

    @property
    def description(self) -> str:
        uid = self.attributes.get("SeriesInstanceUID")
        folder = self.headers[0].path.parent
        return f"series {uid} ({folder})" if uid else f"series in {folder}"

    @classmethod
    def open(cls, paths: Iterable[str | os.PathLike[str]]) -> DicomSeries:
        """Read and check the headers of ``paths``, one file per slice, in any order.

        Raises ``VolumeError`` naming the first file that does not fit the series.
        """
        files = [Path(p) for p in paths]
        if not files:
            raise VolumeError("no DICOM files given")
        first_ds, first = _read_header(files[0])
        iop = np.asarray([float(v) for v in first_ds.ImageOrientationPatient], dtype=np.float64)
        if iop.shape != (6,):
            raise VolumeError(f"{files[0]}: ImageOrientationPatient must have 6 values")
        spacing = np.asarray([float(v) for v in first_ds.PixelSpacing], dtype=np.float64)
        if spacing.shape != (2,) or np.any(spacing <= 0):
            raise VolumeError(
                f"{files[0]}: PixelSpacing {list(spacing)} is not two positive values"
            )
        rows_cols = (int(first_ds.Rows), int(first_ds.Columns))
        series_uid = first_ds.get("SeriesInstanceUID")
        headers = [first]
        for path in files[1:]:
            ds, header = _read_header(path)
            if (int(ds.Rows), int(ds.Columns)) != rows_cols:
                raise VolumeError(
                    f"{path}: {ds.Rows}x{ds.Columns} pixels, the series has {rows_cols[0]}x{rows_cols[1]}"
                )
            other_iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
            if other_iop.shape != (6,) or np.max(np.abs(other_iop - iop)) > _ORIENTATION_TOLERANCE:
                raise VolumeError(
                    f"{path}: ImageOrientationPatient {list(other_iop)} differs from {list(iop)}"
                )
            other_spacing = np.asarray([float(v) for v in ds.PixelSpacing])
            if (
                other_spacing.shape != (2,)
                or np.max(np.abs(other_spacing - spacing)) > _SPACING_TOLERANCE_MM
            ):
                raise VolumeError(
                    f"{path}: PixelSpacing {list(other_spacing)} differs from {list(spacing)}"
                )
            if series_uid and ds.get("SeriesInstanceUID") and ds.SeriesInstanceUID != series_uid:
                raise VolumeError(
                    f"{path}: belongs to series {ds.SeriesInstanceUID}, not {series_uid}"
                )
            headers.append(header)

        right, down = iop[:3], iop[3:]
        normal = slice_normal(right, down)
        z = np.asarray([h.position @ normal for h in headers])
        number_key = np.asarray([h.instance_number or 0 for h in headers])
        order = np.lexsort((np.asarray([str(h.path) for h in headers]), number_key, z))
        kept: list[int] = []
        duplicates = 0
        for i in order:
            if kept and abs(z[i] - z[kept[-1]]) < _SAME_POSITION_MM:
                duplicates += 1
                same = headers[i].sop_instance_uid == headers[kept[-1]].sop_instance_uid
                log.log(
                    logging.DEBUG if same else logging.WARNING,
                    "%s and %s lie at the same position %.3f mm; keeping the first",
                    headers[kept[-1]].path,
                    headers[i].path,
                    z[i],
                )
                continue
            kept.append(int(i))
        inplane = InPlane.from_directions(right, down)
        geometry = Geometry(
            pixel_spacing=inplane.pair(float(spacing[0]), float(spacing[1])),
            shape=inplane.pair(*rows_cols),  # type: ignore[arg-type]
            z_mm=z[kept],
            normal=(float(normal[0]), float(normal[1]), float(normal[2])),
            orientation=tuple(float(v) for v in iop),
        )
        attributes = {
            kw: (str(first_ds.get(kw)) if first_ds.get(kw) not in (None, "") else None)
            for kw in ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "ContrastBolusAgent")
        }
        return cls([headers[i] for i in kept], geometry, inplane, rows_cols, attributes, duplicates)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        idx = [int(i) for i in indices]
        out = np.empty((len(idx), *self._geometry.shape), dtype=np.float32)
        for n, i in enumerate(idx):
            out[n] = self._inplane.apply(_decode_hu(self.headers[i], self._rows_cols))
        return out


def _decode_hu(header: SliceHeader, rows_cols: tuple[int, int]) -> np.ndarray:
    """One file's pixels as float32 HU (rows, cols), padding and values below air set to air."""
    path = header.path
    try:
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds:
            raise VolumeError(f"{path}: no pixel data")
        if header.transfer_syntax in _NATIVE_LITTLE_ENDIAN:
            stored = _native_pixels(ds, header, rows_cols)
        else:
            stored = pydicom.pixels.pixel_array(ds)
    except VolumeError:
        raise
    except Exception as exc:  # pydicom and its plugins raise many kinds; name the file
        raise VolumeError(
            f"{path}: cannot decode pixel data ({header.transfer_syntax.name}): {exc}"
        ) from exc
    if stored.shape != rows_cols:
        raise VolumeError(f"{path}: decoded shape {stored.shape} != {rows_cols}")
    hu = stored.astype(np.float32)
    hu *= header.slope
    hu += header.intercept
    if header.padding is not None:
        lo, hi = header.padding
        hu[(stored >= lo) & (stored <= hi)] = AIR_HU
    np.maximum(hu, AIR_HU, out=hu)
    return hu


def _native_pixels(ds: Dataset, header: SliceHeader, rows_cols: tuple[int, int]) -> np.ndarray:
    """Stored values of uncompressed little-endian pixel data, without pydicom's handlers."""
    bits = header.bits_allocated
    if bits not in (8, 16, 32):
        raise VolumeError(f"{header.path}: BitsAllocated {bits} is not 8, 16 or 32")
    dtype = np.dtype(f"<{'i' if header.signed else 'u'}{bits // 8}")
    count = rows_cols[0] * rows_cols[1]
    data = ds.PixelData
    if len(data) < count * dtype.itemsize:
        raise VolumeError(
            f"{header.path}: pixel data holds {len(data)} bytes, expected {count * dtype.itemsize}"
        )
    stored = np.frombuffer(data, dtype=dtype, count=count).reshape(rows_cols)
    unused = bits - header.bits_stored
    if 0 < unused < bits:
        # Bits above BitsStored may hold anything (old overlays): mask, or sign-extend.
        if header.signed:
            stored = (stored << unused) >> unused
        else:
            stored = stored & np.array((1 << header.bits_stored) - 1, dtype=dtype)
    return stored


def group_series(paths: Iterable[str | os.PathLike[str]]) -> dict[str, list[Path]]:
    """DICOM files by SeriesInstanceUID; files without one (anonymised) group under "".

    Files that are not DICOM are skipped with a debug log.

    For a folder holding several series: ``group_series(p for p in root.rglob('*') if p.is_file())``.
    """
    groups: dict[str, list[Path]] = {}
    for raw in paths:
        path = Path(raw)
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            log.debug("%s: skipped, not DICOM (%s)", path, exc)
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID") or ""), []).append(path)
    return groups
