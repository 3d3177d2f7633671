"""The one preprocessing of ivcontrast: a HU stack to the model's input, for training and serving.

Steps, all parameters in ``PreprocessConfig`` (which the model card records):

1. Slice choice without fixed index ranges: ``num_slices`` positions spread evenly (in mm) over
   the stack's z extent, each the centre of one of ``num_slices`` equal bins, so a 0.625 mm and a
   5 mm series of the same anatomy give the same positions. Only those slices are decoded.
   With ``slab_mm`` > 0 each position averages the slices within +-slab_mm/2 (thin-slice noise
   toward thick-slice noise).
2. Body mask per slice, on a ~``mask_resolution_mm`` grid: HU above ``body_threshold_hu``; an
   opening removes structures thinner than ``table_removal_mm`` (the table, cables, blankets),
   the largest component is kept, grown back inside the threshold and hole-filled (lungs and
   airways are inside the body). Slices whose body cross-section is below
   ``min_body_area_mm2`` (air above the head, beyond the feet) are dropped. Outside the mask is air.
3. Crop a square around the body's bounding box plus ``crop_margin_mm``, padded with air where
   it leaves the image, and resample it to ``size`` x ``size`` with separable, antialiased
   linear weights (two matrix products per slice: fast and free of aliasing when shrinking).
4. Fixed HU windows as channels, each mapped to [0, 1]: the same HU give the same input on every
   scanner (no per-volume min-max scaling).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage
from threadpoolctl import threadpool_limits

from ivcontrast.classifier.errors import VolumeError
from ivcontrast.classifier.volume import AIR_HU, SliceSource

log = logging.getLogger(__name__)

# Bump when a change here alters the model input for the same config: packages record it, and a
# package made for another algorithm version is refused rather than silently fed different input.
PREPROCESS_ALGORITHM = 1
# Source slices decoded at a time: bounds memory (64 x 512 x 512 float32 = 64 MB).
_READ_CHUNK = 64
_CROSS_2D = ndimage.generate_binary_structure(2, 1)
_CROSS_3D = _CROSS_2D[None]  # in-plane only: slices never connect to each other


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that shapes the model input; serialised into the model card."""

    size: int = 160
    num_slices: int = 32  # 0 = every slice
    windows: tuple[tuple[float, float], ...] = ((-200.0, 200.0), (-50.0, 350.0), (-1000.0, 1000.0))
    slab_mm: float = 0.0
    body_threshold_hu: float = -500.0
    min_body_area_mm2: float = 2500.0
    crop_margin_mm: float = 10.0
    mask_resolution_mm: float = 2.0
    table_removal_mm: float = 10.0

    def __post_init__(self) -> None:
        windows = tuple((float(lo), float(hi)) for lo, hi in self.windows)
        object.__setattr__(self, "windows", windows)
        problems = []
        if self.size < 16:
            problems.append(f"size {self.size} < 16")
        if self.num_slices < 0:
            problems.append(f"num_slices {self.num_slices} < 0")
        if not windows or any(hi <= lo for lo, hi in windows):
            problems.append(f"windows {windows} must be (low, high) pairs with low < high")
        for name in ("slab_mm", "min_body_area_mm2", "crop_margin_mm"):
            if getattr(self, name) < 0:
                problems.append(f"{name} {getattr(self, name)} < 0")
        for name in ("mask_resolution_mm", "table_removal_mm"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} {getattr(self, name)} <= 0")
        if problems:
            raise ValueError("invalid preprocessing config: " + "; ".join(problems))

    @property
    def channels(self) -> int:
        return len(self.windows)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["windows"] = [list(w) for w in self.windows]
        out["algorithm"] = PREPROCESS_ALGORITHM
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        data = dict(data)
        algorithm = data.pop("algorithm", None)
        if algorithm != PREPROCESS_ALGORITHM:
            raise ValueError(
                f"preprocessing algorithm {algorithm!r}: this ivcontrast implements {PREPROCESS_ALGORITHM}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing parameters: {', '.join(unknown)}")
        if "windows" in data:
            data["windows"] = tuple(tuple(w) for w in data["windows"])
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PreprocessConfig:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True, eq=False)
class ModelInput:
    """The model's input for one volume, and where each slice came from."""

    x: np.ndarray  # (m, channels, size, size) float32 in [0, 1]
    hu: np.ndarray  # (m, size, size) float32: x == apply_windows(hu, config.windows)
    source: str  # the source's description, for messages and records
    slice_indices: np.ndarray  # (m,) centre slice of each sample, index into the sorted stack
    z_mm: np.ndarray  # (m,) position of that slice along the normal
    body_area_mm2: np.ndarray  # (m,)
    pixel_mm: np.ndarray  # (m,) size of an input pixel after the crop and resize
    candidates: int  # positions sampled before slices without body were dropped
    source_slices: int  # slices in the whole stack
    read_seconds: float  # decoding the chosen slices (callers may add header reading)
    prepare_seconds: float  # mask, crop, resize, windows

    @property
    def n_slices(self) -> int:
        return int(self.x.shape[0])


def plan_samples(z_mm: np.ndarray, num_slices: int, slab_mm: float = 0.0) -> list[np.ndarray]:
    """For each sample position, the indices of the slices it averages (its centre first).

    ``num_slices`` positions at the centres of equal z bins over the stack's extent, each
    snapped to the nearest slice; 0 (or at least as many as the stack has) = every slice.
    """
    z = np.asarray(z_mm, dtype=np.float64)
    n = len(z)
    if n == 0:
        raise VolumeError("no slices")
    if num_slices <= 0 or num_slices >= n:
        centres = np.arange(n)
    else:
        targets = z[0] + (np.arange(num_slices) + 0.5) * (z[-1] - z[0]) / num_slices
        right = np.clip(np.searchsorted(z, targets), 1, n - 1)
        left = right - 1
        nearest = np.where(targets - z[left] <= z[right] - targets, left, right)
        centres = np.unique(nearest)
    if slab_mm <= 0:
        return [np.array([c]) for c in centres]
    groups = []
    for c in centres:
        members = np.flatnonzero(np.abs(z - z[c]) <= slab_mm / 2 + 1e-6)
        groups.append(np.concatenate(([c], members[members != c])))
    return groups


def body_masks(
    hu: np.ndarray, pixel_spacing: tuple[float, float], config: PreprocessConfig
) -> tuple[np.ndarray, tuple[int, int]]:
    """Body masks of ``hu`` (n, rows, cols) on a coarse grid, and the grid's (row, col) stride."""
    stride = (
        max(1, round(config.mask_resolution_mm / pixel_spacing[0])),
        max(1, round(config.mask_resolution_mm / pixel_spacing[1])),
    )
    cell_mm = min(stride[0] * pixel_spacing[0], stride[1] * pixel_spacing[1])
    iterations = max(1, round((config.table_removal_mm / cell_mm - 1) / 2))
    tissue = hu[:, :: stride[0], :: stride[1]] > config.body_threshold_hu
    opened = ndimage.binary_opening(tissue, structure=_CROSS_3D, iterations=iterations)
    masks = np.zeros_like(tissue)
    for i in range(len(tissue)):
        labels, count = ndimage.label(opened[i], structure=_CROSS_2D)
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        largest = labels == int(np.argmax(sizes))
        grown = ndimage.binary_dilation(largest, _CROSS_2D, iterations=iterations, mask=tissue[i])
        masks[i] = ndimage.binary_fill_holes(grown)
    return masks, stride


def _axis_weights(
    centre_mm: float, side_mm: float, n_in: int, spacing: float, size: int
) -> np.ndarray:
    """(size, n_in) linear resampling weights, widened when shrinking (antialiasing).

    Row sums are the share of each output pixel that falls inside the image; the rest is air.
    """
    step = side_mm / size
    # Input pixel k covers [k, k+1) * spacing mm; index coordinates put its centre at k.
    u = (centre_mm - side_mm / 2 + (np.arange(size) + 0.5) * step) / spacing - 0.5
    scale = max(1.0, step / spacing)
    weights = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in)[None, :] - u[:, None]) / scale)
    radius = int(np.ceil(scale))
    taps = np.floor(u)[:, None] + np.arange(-radius, radius + 1)[None, :]
    total = np.maximum(0.0, 1.0 - np.abs(taps - u[:, None]) / scale).sum(axis=1)
    return (weights / total[:, None]).astype(np.float32)


def _crop_resize(
    hu: np.ndarray, pixel_spacing: tuple[float, float], box_mm: np.ndarray, size: int
) -> np.ndarray:
    """Resample the square ``box_mm`` (centre row, centre col, side) of one slice to size x size."""
    centre_r, centre_c, side = (float(v) for v in box_mm)
    w_rows = _axis_weights(centre_r, side, hu.shape[0], pixel_spacing[0], size)
    w_cols = _axis_weights(centre_c, side, hu.shape[1], pixel_spacing[1], size)
    # Only the band of input pixels that any output pixel touches takes part in the products.
    rows = np.flatnonzero(w_rows.any(axis=0))
    cols = np.flatnonzero(w_cols.any(axis=0))
    inside = np.outer(w_rows.sum(axis=1), w_cols.sum(axis=1))
    if len(rows) == 0 or len(cols) == 0:
        return np.full((size, size), AIR_HU, dtype=np.float32)
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    out = w_rows[:, r0:r1] @ hu[r0:r1, c0:c1] @ w_cols[:, c0:c1].T
    return (out + AIR_HU * (1.0 - inside)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class PreparedSlices:
    x: np.ndarray  # (kept, channels, size, size)
    hu: np.ndarray  # (kept, size, size): the cropped, resized HU the windows were taken from
    keep: np.ndarray  # (n,) bool: slices with enough body
    body_area_mm2: np.ndarray  # (n,)
    pixel_mm: np.ndarray  # (kept,)


def prepare_slices(
    hu: np.ndarray, pixel_spacing: tuple[float, float], config: PreprocessConfig
) -> PreparedSlices:
    """Steps 2-4 on decoded HU slices (n, rows, cols) of one stack."""
    # The resize is many small matrix products: OpenBLAS threads only contend with each other
    # and with the inference threads. One thread: 0.2 s for 32 slices of 512x512 on a busy
    # 2-core machine where two took 0.36-0.68 s; about as fast as two on an idle one.
    with threadpool_limits(limits=1, user_api="blas"):
        return _prepare_slices(hu, pixel_spacing, config)


def _prepare_slices(
    hu: np.ndarray, pixel_spacing: tuple[float, float], config: PreprocessConfig
) -> PreparedSlices:
    masks, stride = body_masks(hu, pixel_spacing, config)
    cell = (stride[0] * pixel_spacing[0], stride[1] * pixel_spacing[1])
    area = masks.sum(axis=(1, 2)).astype(np.float64) * cell[0] * cell[1]
    keep = area >= max(config.min_body_area_mm2, 1e-9)
    kept = np.flatnonzero(keep)
    resized = np.empty((len(kept), config.size, config.size), dtype=np.float32)
    pixel_mm = np.empty(len(kept))
    # One coarse cell of slack around the mask, so the skin is never cut.
    slack = ndimage.binary_dilation(masks[kept], _CROSS_3D)
    row_cell = np.minimum(np.arange(hu.shape[1]) // stride[0], slack.shape[1] - 1)
    col_cell = np.minimum(np.arange(hu.shape[2]) // stride[1], slack.shape[2] - 1)
    for j, i in enumerate(kept):
        mask = masks[i]
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        top, bottom = (
            rows[0] * cell[0],
            min((rows[-1] + 1) * cell[0], hu.shape[1] * pixel_spacing[0]),
        )
        left, right = (
            cols[0] * cell[1],
            min((cols[-1] + 1) * cell[1], hu.shape[2] * pixel_spacing[1]),
        )
        side = max(bottom - top, right - left) + 2 * config.crop_margin_mm
        box = np.array([(top + bottom) / 2, (left + right) / 2, side])
        body = np.where(slack[j][row_cell[:, None], col_cell[None, :]], hu[i], np.float32(AIR_HU))
        resized[j] = _crop_resize(body, pixel_spacing, box, config.size)
        pixel_mm[j] = side / config.size
    return PreparedSlices(
        x=apply_windows(resized, config.windows),
        hu=resized,
        keep=keep,
        body_area_mm2=area,
        pixel_mm=pixel_mm,
    )


def apply_windows(hu: np.ndarray, windows: Sequence[tuple[float, float]]) -> np.ndarray:
    """HU (..., S, S) to channels (..., len(windows), S, S) in [0, 1], one per fixed window.

    Step 4 on its own, for a training cache that stores ``ModelInput.hu`` and augments HU
    (offsets within scanner tolerance, noise) before windowing.
    """
    out = np.empty((*hu.shape[:-2], len(windows), *hu.shape[-2:]), dtype=np.float32)
    for c, (lo, hi) in enumerate(windows):
        np.clip((hu - lo) / (hi - lo), 0.0, 1.0, out=out[..., c, :, :])
    return out


def _chunks(groups: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    chunks: list[list[np.ndarray]] = [[]]
    members = 0
    for group in groups:
        if chunks[-1] and members + len(group) > _READ_CHUNK:
            chunks.append([])
            members = 0
        chunks[-1].append(group)
        members += len(group)
    return chunks


def preprocess(source: SliceSource, config: PreprocessConfig) -> ModelInput:
    """A sorted axial stack to the model input: choose, decode, mask, crop, resize, window.

    Raises ``VolumeError`` for a stack that is not axial or shows no body.
    """
    geometry = source.geometry
    if not geometry.is_axial:
        raise VolumeError(
            f"{source.description}: not an axial stack (slice normal {np.round(geometry.normal, 3).tolist()})"
        )
    groups = plan_samples(geometry.z_mm, config.num_slices, config.slab_mm)
    xs, hus, centres, areas, pixels = [], [], [], [], []
    read_s = prepare_s = 0.0
    for chunk in _chunks(groups):
        t0 = time.perf_counter()
        needed = np.unique(np.concatenate(chunk))
        decoded = source.read(needed.tolist())
        where = {int(v): k for k, v in enumerate(needed)}
        if all(len(g) == 1 for g in chunk):
            hu = decoded[[where[int(g[0])] for g in chunk]]
        else:
            hu = np.stack([decoded[[where[int(v)] for v in g]].mean(axis=0) for g in chunk])
        t1 = time.perf_counter()
        prepared = prepare_slices(hu, geometry.pixel_spacing, config)
        t2 = time.perf_counter()
        read_s += t1 - t0
        prepare_s += t2 - t1
        chunk_centres = np.array([int(g[0]) for g in chunk])
        xs.append(prepared.x)
        hus.append(prepared.hu)
        centres.append(chunk_centres[prepared.keep])
        areas.append(prepared.body_area_mm2[prepared.keep])
        pixels.append(prepared.pixel_mm)
    slice_indices = np.concatenate(centres)
    if len(slice_indices) == 0:
        raise VolumeError(
            f"{source.description}: none of {len(groups)} sampled slices shows a body cross-section "
            f"of at least {config.min_body_area_mm2:g} mm2 above {config.body_threshold_hu:g} HU"
        )
    log.debug(
        "%s: %d of %d sampled slices used (read %.3f s, prepare %.3f s)",
        source.description,
        len(slice_indices),
        len(groups),
        read_s,
        prepare_s,
    )
    return ModelInput(
        x=np.concatenate(xs),
        hu=np.concatenate(hus),
        source=source.description,
        slice_indices=slice_indices,
        z_mm=geometry.z_mm[slice_indices],
        body_area_mm2=np.concatenate(areas),
        pixel_mm=np.concatenate(pixels),
        candidates=len(groups),
        source_slices=geometry.n_slices,
        read_seconds=read_s,
        prepare_seconds=prepare_s,
    )
