"""HU volumes with their geometry, and the NIfTI and NRRD readers.

Every reader hands out the same thing, a ``SliceSource``: a stack of axial slices sorted by
position along the slice normal (ascending, toward the head), in one in-plane orientation
(rows run anterior to posterior, columns run from the patient's right to left: the radiological
display), whatever the file stored. Slices are decoded only when ``read`` asks for them, so a
1,000-slice series costs memory only for the slices preprocessing picks.

Patient coordinates are DICOM's LPS (x to the patient's left, y posterior, z superior).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ivcontrast.classifier.errors import VolumeError

log = logging.getLogger(__name__)

# Nothing in a patient is below air; lower values are padding or outside the reconstruction.
AIR_HU = -1024.0
# A normal this close to the patient's z axis is axial (gantry tilts reach ~30 degrees).
AXIAL_MIN_COSINE = 0.8


@dataclass(frozen=True)
class InPlane:
    """How to turn a stored slice into the canonical in-plane orientation.

    ``right`` is the direction of increasing column index and ``down`` of increasing row index,
    as DICOM's ImageOrientationPatient gives them (LPS).
    """

    transpose: bool
    flip_rows: bool
    flip_cols: bool

    @classmethod
    def from_directions(cls, right: np.ndarray, down: np.ndarray) -> InPlane:
        if abs(right[0]) >= abs(right[1]):
            return cls(transpose=False, flip_rows=bool(down[1] < 0), flip_cols=bool(right[0] < 0))
        return cls(transpose=True, flip_rows=bool(right[1] < 0), flip_cols=bool(down[0] < 0))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """A view of ``image`` (..., rows, cols) in the canonical orientation."""
        out = np.swapaxes(image, -1, -2) if self.transpose else image
        if self.flip_rows:
            out = out[..., ::-1, :]
        if self.flip_cols:
            out = out[..., ::-1]
        return out

    def pair(self, rows: float, cols: float) -> tuple[float, float]:
        """A (rows, cols) pair (shape or spacing) after the transform."""
        return (cols, rows) if self.transpose else (rows, cols)


def slice_normal(right: np.ndarray, down: np.ndarray) -> np.ndarray:
    """Unit normal of the slice plane, signed so that its largest component is positive
    (toward the head for axial slices, whatever the patient position)."""
    normal = np.cross(np.asarray(right, float), np.asarray(down, float))
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        raise VolumeError(
            f"slice orientation {right}, {down}: row and column directions are parallel"
        )
    normal /= length
    if normal[int(np.argmax(np.abs(normal)))] < 0:
        normal = -normal
    return normal


@dataclass(frozen=True, eq=False)
class Geometry:
    """Where the slices of a canonical stack lie in the patient."""

    pixel_spacing: tuple[float, float]  # (between rows, between columns) in mm, canonical
    shape: tuple[int, int]  # (rows, columns) of a canonical slice
    z_mm: np.ndarray  # (n,) slice positions along ``normal``, ascending
    normal: tuple[float, float, float]  # LPS unit vector
    orientation: tuple[float, ...]  # the source's direction cosines: right (3), then down (3)

    @property
    def n_slices(self) -> int:
        return len(self.z_mm)

    @property
    def is_axial(self) -> bool:
        return abs(self.normal[2]) >= AXIAL_MIN_COSINE

    @property
    def slice_spacing(self) -> float:
        """Median distance between neighbouring slices in mm (nan for one slice)."""
        return float(np.median(np.diff(self.z_mm))) if self.n_slices > 1 else float("nan")


class SliceSource(Protocol):
    """A sorted stack of canonical axial slices that decodes on demand."""

    @property
    def geometry(self) -> Geometry: ...

    @property
    def description(self) -> str: ...

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Slices ``indices`` (into the sorted stack) as HU, float32 (len, rows, cols)."""
        ...


class RememberingSource:
    """A ``SliceSource`` that keeps what it decoded, so that a second reader of the same
    slices (the physics opinion, after preprocessing) costs no second decode. Short-lived:
    one per series being prepared."""

    def __init__(self, source: SliceSource) -> None:
        self._source = source
        self._slices: dict[int, np.ndarray] = {}

    @property
    def geometry(self) -> Geometry:
        return self._source.geometry

    @property
    def description(self) -> str:
        return self._source.description

    def read(self, indices: Sequence[int]) -> np.ndarray:
        missing = sorted({int(i) for i in indices} - self._slices.keys())
        if missing:
            for index, image in zip(missing, self._source.read(missing), strict=True):
                self._slices[index] = image
        return np.stack([self._slices[int(i)] for i in indices])


@dataclass(frozen=True, eq=False)
class Volume:
    """A canonical HU stack held in memory (tests, small volumes, anything already decoded)."""

    hu: np.ndarray  # (n, rows, cols), canonical, sorted like geometry.z_mm
    geometry: Geometry
    description: str = "volume"

    def __post_init__(self) -> None:
        expected = (self.geometry.n_slices, *self.geometry.shape)
        if self.hu.shape != expected:
            raise VolumeError(f"{self.description}: array shape {self.hu.shape} != {expected}")

    def read(self, indices: Sequence[int]) -> np.ndarray:
        return np.maximum(self.hu[np.asarray(indices, dtype=np.intp)], AIR_HU).astype(
            np.float32, copy=False
        )

    @classmethod
    def axial(
        cls,
        hu: np.ndarray,
        pixel_spacing: tuple[float, float],
        z_mm: Sequence[float] | np.ndarray,
        description: str = "volume",
    ) -> Volume:
        """A volume already in canonical axial orientation; slices are sorted by ``z_mm``."""
        z = np.asarray(z_mm, dtype=np.float64)
        order = np.argsort(z, kind="stable")
        geometry = Geometry(
            pixel_spacing=(float(pixel_spacing[0]), float(pixel_spacing[1])),
            shape=(int(hu.shape[1]), int(hu.shape[2])),
            z_mm=z[order],
            normal=(0.0, 0.0, 1.0),
            orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        )
        return cls(hu[order], geometry, description)


class AffineVolume:
    """A 3-D array placed in LPS space by a 4x4 affine (NIfTI, NRRD), read slice by slice.

    ``data`` may be a lazy array (nibabel's ArrayProxy): only the slices asked for are read.
    Whichever array axis is closest to the patient's z axis is the slice axis.
    """

    def __init__(self, data: Any, affine_lps: np.ndarray, description: str) -> None:
        if len(data.shape) != 3:
            raise VolumeError(f"{description}: expected a 3-D volume, got shape {data.shape}")
        affine = np.asarray(affine_lps, dtype=np.float64)
        steps = affine[:3, :3]
        lengths = np.linalg.norm(steps, axis=0)
        if np.any(lengths <= 0) or not np.all(np.isfinite(affine)):
            raise VolumeError(f"{description}: degenerate affine {affine.tolist()}")
        directions = steps / lengths
        self._data = data
        self._description = description
        self._slice_axis = int(np.argmax(np.abs(directions[2])))
        row_axis, col_axis = (a for a in range(3) if a != self._slice_axis)
        right, down = directions[:, col_axis], directions[:, row_axis]
        self._inplane = InPlane.from_directions(right, down)
        normal = slice_normal(right, down)
        n = int(data.shape[self._slice_axis])
        origins = affine[:3, 3][None, :] + np.arange(n)[:, None] * steps[:, self._slice_axis]
        z = origins @ normal
        self._order = np.argsort(z, kind="stable")
        self._geometry = Geometry(
            pixel_spacing=self._inplane.pair(float(lengths[row_axis]), float(lengths[col_axis])),
            shape=tuple(
                int(v) for v in self._inplane.pair(data.shape[row_axis], data.shape[col_axis])
            ),  # type: ignore[arg-type]
            z_mm=z[self._order],
            normal=(float(normal[0]), float(normal[1]), float(normal[2])),
            orientation=tuple(float(v) for v in (*right, *down)),
        )

    @property
    def geometry(self) -> Geometry:
        return self._geometry

    @property
    def description(self) -> str:
        return self._description

    def read(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.intp)
        out = np.empty((len(idx), *self._geometry.shape), dtype=np.float32)
        stored = self._order[idx]
        # In file order, so a compressed file is read forward only.
        for k in np.unique(stored):
            slicer: list[Any] = [slice(None)] * 3
            slicer[self._slice_axis] = int(k)
            plane = np.asarray(self._data[tuple(slicer)], dtype=np.float32)
            plane = np.nan_to_num(self._inplane.apply(plane), nan=AIR_HU)
            out[stored == k] = np.maximum(plane, AIR_HU)
        return out


# RAS-style spaces differ from LPS by the sign of x and/or y.
_NRRD_SPACE_SIGNS = {
    "left-posterior-superior": (1, 1, 1),
    "lps": (1, 1, 1),
    "right-anterior-superior": (-1, -1, 1),
    "ras": (-1, -1, 1),
    "left-anterior-superior": (1, -1, 1),
    "las": (1, -1, 1),
}


def read_nifti(path: str | Path) -> AffineVolume:
    """A NIfTI-1/2 CT volume in HU (values after scl_slope/scl_inter); read lazily."""
    import nibabel as nib

    path = Path(path)
    try:
        img: Any = nib.load(path)
    except (OSError, nib.filebasedimages.ImageFileError) as exc:
        raise VolumeError(f"{path}: cannot read NIfTI: {exc}") from exc
    data = img.dataobj
    if len(img.shape) == 4 and img.shape[3] == 1:
        data = data.reshape(img.shape[:3])
    # NIfTI is RAS+; flip x and y to LPS.
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(img.affine, dtype=np.float64)
    return AffineVolume(data, affine, str(path))


def read_nrrd(path: str | Path) -> AffineVolume:
    """An NRRD CT volume in HU with 'space', 'space directions' and 'space origin'.

    pynrrd reads the whole array (a gzip-encoded NRRD cannot be read in parts).
    """
    import nrrd

    path = Path(path)
    try:
        data, header = nrrd.read(str(path), index_order="F")
    except (OSError, nrrd.NRRDError) as exc:
        raise VolumeError(f"{path}: cannot read NRRD: {exc}") from exc
    space = str(header.get("space", "")).lower()
    if space not in _NRRD_SPACE_SIGNS:
        raise VolumeError(f"{path}: NRRD space {space or 'missing'!r} is not a patient space")
    directions = header.get("space directions")
    if directions is None or data.ndim != 3:
        raise VolumeError(f"{path}: expected a 3-D NRRD with space directions")
    steps = np.asarray(directions, dtype=np.float64)  # one row per array axis
    if steps.shape != (3, 3) or not np.all(np.isfinite(steps)):
        raise VolumeError(f"{path}: NRRD space directions {directions!r} are not 3 vectors")
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    signs = np.asarray(_NRRD_SPACE_SIGNS[space], dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = (steps * signs).T
    affine[:3, 3] = origin * signs
    return AffineVolume(data, affine, str(path))
