"""The physics second opinion: is the blood pool enhanced? Measured in HU, without the network.

Iodine raises the HU of blood from ~40 to 130-500. The network learns texture and can be
fooled by calcium, bone and odd anatomy; this opinion only measures where blood is and what
it reads, so a disagreement between the two is worth a person's look (the ``review`` state).

Where blood is found, by body region (each sampled slice is assigned one):

- **trunk and neck**: the blood pool is the best *tube*: a round, homogeneous soft-tissue
  or enhanced region (radius 4-22 mm) that continues along z at the same place over several
  slices, and that bone does not surround (so the vertebral body's marrow and the spinal canal
  are not tubes here) — in practice the aorta, and in the neck the jugular and carotid vessels.
  Oral contrast in bowel is heterogeneous and does not run straight, so it rarely qualifies.
- **head**: the dural venous sinuses, just inside the inner table of the skull, at the midline
  behind and at the sinuses' bends; measured as the densest blood-range region there.

Limits, measured: on fresh phantoms it found a blood pool in 29 of 36 series and read 20 of
those right (small neck vessels are missed, and then a muscle or gland tube reads
unenhanced), hence the rule that only a trunk vessel may rule contrast out; on coarse images
(128 px, 3-4 mm pixels) bone blurs into what it measures (a plain chest phantom read 176 HU),
so pixels coarser than ``max_pixel_mm`` (3 mm) are not measured.
Its rules were set by looking at the ten real series of ``shared/realct``.

The HU of a structure is a median over its core with calcium (> ``calcium_hu``) removed, so a
calcified wall or plaque cannot raise it. The opinion is ``contrast`` at or above
``threshold_hu``; a series where no blood pool can be found gets ``found=False`` with the
reason, never a made-up value.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ivcontrast.classifier.volume import SliceSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhysicsParams:
    """How the blood pool is searched for and judged (the defaults suit adult CT)."""

    threshold_hu: float = 125.0  # blood at or above this is enhanced (unenhanced blood ~30-70)
    max_slices: int = 48  # slices sampled over the series
    grid_mm: float = 1.5  # in-plane resampling before measuring
    calcium_hu: float = 600.0  # voxels above this are calcium or bone, never blood
    min_tube_mm: float = 20.0  # a tube must run at least this far along z
    min_radius_mm: float = 5.0  # the aorta (its homogeneous core); neck vessels less
    min_neck_radius_mm: float = 3.5
    max_radius_mm: float = 22.0
    # Only a vessel at least this wide rules contrast out (a trunk vessel: aorta, heart).
    rule_out_radius_mm: float = 7.0
    # Coarser pixels put fewer than ~3 across a 5 mm vessel core: bone and vessel blur into
    # one (a plain 128 px chest phantom at 3.5 mm read 176 HU), so nothing is measured.
    max_pixel_mm: float = 3.0


MIN_DEPTH_MM = {"trunk": 40.0, "neck": 12.0}


@dataclass(frozen=True)
class BloodPool:
    """The physics opinion on one series."""

    found: bool
    contrast: bool | None  # None when nothing was found
    structure: str | None  # e.g. "chest vessel (aorta)", "dural venous sinus"
    hu: float | None  # robust HU of the blood pool (median, calcium excluded)
    slice_index: int | None  # index in the sorted series of its most representative slice
    z_mm: float | None
    row: float | None  # centre in that slice (canonical pixel row, column)
    col: float | None
    radius_mm: float | None
    threshold_hu: float
    reason: str  # how it was measured, or why nothing was found
    # Whether a low reading rules contrast out: only a trunk vessel (aorta, heart) is large
    # enough to be found reliably. Neck vessels and sinuses are small; when they are missed,
    # the tube found instead (muscle, gland) reads unenhanced, so a low HU there proves little.
    rules_out: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "found": self.found,
            "contrast": self.contrast,
            "structure": self.structure,
            "hu": None if self.hu is None else round(self.hu, 1),
            "slice_index": self.slice_index,
            "z_mm": None if self.z_mm is None else round(self.z_mm, 2),
            "row": None if self.row is None else round(self.row, 1),
            "col": None if self.col is None else round(self.col, 1),
            "radius_mm": None if self.radius_mm is None else round(self.radius_mm, 1),
            "threshold_hu": self.threshold_hu,
            "reason": self.reason,
            "rules_out": self.rules_out,
        }

    @classmethod
    def not_found(cls, reason: str, params: PhysicsParams) -> BloodPool:
        return cls(
            False, None, None, None, None, None, None, None, None, params.threshold_hu, reason
        )


@dataclass
class _Candidate:
    """A round homogeneous region in one sampled slice."""

    slice_pos: int  # position among the sampled slices
    row: float  # centre on the resampled grid
    col: float
    radius_mm: float
    hu: float  # median over the core, calcium excluded
    region: str


@dataclass
class _Tube:
    members: list[_Candidate] = field(default_factory=list)

    @property
    def last(self) -> _Candidate:
        return self.members[-1]


def _disk(radius_px: float) -> np.ndarray:
    r = max(1, math.ceil(radius_px))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y) <= radius_px * radius_px + 1e-6


def sample_indices(n_slices: int, max_slices: int) -> list[int]:
    """Up to ``max_slices`` indices spread evenly over the stack, ends included."""
    if n_slices <= max_slices:
        return list(range(n_slices))
    return sorted({round(i) for i in np.linspace(0, n_slices - 1, max_slices)})


def _resample(hu: np.ndarray, spacing: tuple[float, float], grid_mm: float) -> np.ndarray:
    factors = (spacing[0] / grid_mm, spacing[1] / grid_mm)
    if abs(factors[0] - 1) < 0.05 and abs(factors[1] - 1) < 0.05:
        return hu.astype(np.float32, copy=False)
    return ndi.zoom(hu.astype(np.float32), (1, *factors), order=1, prefilter=False)


def _body(smooth: np.ndarray) -> np.ndarray:
    """The largest connected region above -400 HU (the patient without the table)."""
    mask = smooth > -400
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    body = labels == 1 + int(np.argmax(sizes))
    # Fill between the outermost body pixels of each row and each column, so lungs count as
    # body even where the field of view cuts the chest wall off (holes then are not closed).
    return _spans(body, axis=1) & _spans(body, axis=0)


def _spans(mask: np.ndarray, axis: int) -> np.ndarray:
    """True between the first and last True of each line along ``axis``."""
    forward = np.maximum.accumulate(mask, axis=axis)
    backward = np.flip(np.maximum.accumulate(np.flip(mask, axis=axis), axis=axis), axis=axis)
    return forward & backward


def _intracranial(smooth: np.ndarray, grid_mm: float) -> np.ndarray | None:
    """The inside of a closed skull ring (brain-range HU), or None when this is no head slice."""
    bone = ndi.binary_closing(smooth > 300, _disk(2.0 / grid_mm))
    inside = ndi.binary_fill_holes(bone) & ~bone
    labels, n = ndi.label(inside)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    best = 1 + int(np.argmax(sizes))
    if sizes[best - 1] * grid_mm**2 < 4000:  # < 40 cm2: a vertebra or a sinus, not a brain
        return None
    region = labels == best
    if not 0.0 <= float(np.median(smooth[region])) <= 90.0:
        return None
    return region


def _region(smooth: np.ndarray, body: np.ndarray, grid_mm: float) -> str:
    area_cm2 = float(body.sum()) * grid_mm**2 / 100
    air = float((body & (smooth < -500)).sum()) * grid_mm**2 / 100
    if air > 0.1 * area_cm2:
        return "chest"
    if area_cm2 < 300:
        return "neck"
    return "abdomen"


# Rays (of 16) that must meet bone, or a brighter rim, to call a region walled in.
WALLED_RAYS = 8
RIM_RAYS = 7
_RAYS = [(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 16, endpoint=False)]


def _walled_in_by_bone(
    smooth: np.ndarray, row: int, col: int, radius_mm: float, core_hu: float, grid_mm: float
) -> bool:
    """True when half the rays from the centre meet bone before they meet fat or air (the
    spinal canal), or nearly half pass a rim brighter than the centre (marrow in cortex)."""
    # Cortex reads 200-1000 HU in old and young patients; it is always brighter than the
    # region it walls in (marrow, canal), by more than a vessel wall is.
    bone_hu = max(200.0, core_hu + 80.0)
    hits = rims = 0
    steps = np.arange(0.5 * radius_mm, radius_mm + 25.0, grid_mm) / grid_mm
    rim = int(np.searchsorted(steps * grid_mm, radius_mm + 6.0))
    for dy, dx in _RAYS:
        rr = np.round(row + dy * steps).astype(int)
        cc = np.round(col + dx * steps).astype(int)
        inside = (rr >= 0) & (rr < smooth.shape[0]) & (cc >= 0) & (cc < smooth.shape[1])
        values = smooth[rr[inside], cc[inside]]
        bone = np.nonzero(values > bone_hu)[0]
        free = np.nonzero(values < -50)[0]
        if bone.size and (not free.size or bone[0] < free[0]):
            hits += 1
        # Marrow is dimmer than the cortex just around it; a vessel's lumen is the brightest
        # thing in it (its wall and the fat around it read lower).
        if values[:rim].size and float(values[:rim].max()) > core_hu + 60.0:
            rims += 1
    return hits >= WALLED_RAYS or rims >= RIM_RAYS


@dataclass(frozen=True)
class _Round:
    """A round homogeneous region in one slice, on the resampled grid."""

    row: float
    col: float
    radius_mm: float
    hu: float  # core median, calcium excluded
    spread_hu: float  # core interquartile range
    walled: bool  # most rays from its centre meet bone before fat or air
    depth_mm: float  # distance from the skin


def _round_regions(
    v: np.ndarray, smooth: np.ndarray, body: np.ndarray, params: PhysicsParams
) -> list[_Round]:
    """Round, homogeneous regions of soft-tissue to enhanced-blood HU (centres of the
    distance map's local maxima), with what surrounds them."""
    g = params.grid_mm
    tissue = body & (smooth >= -20) & (smooth <= params.calcium_hu)
    # Keep only homogeneous tissue: edges between structures and trabecular bone have a high
    # local spread, so an enhanced aorta against the spine comes apart from the vertebra.
    mean = ndi.uniform_filter(v, 3)
    spread = np.sqrt(np.maximum(ndi.uniform_filter(v * v, 3) - mean * mean, 0.0))
    if tissue.any():
        noise = float(np.median(spread[tissue]))
        tissue &= spread <= max(20.0, 2.0 * noise)
    dist = ndi.distance_transform_edt(tissue) * g
    smallest = params.min_neck_radius_mm
    peaks = (dist == ndi.maximum_filter(dist, footprint=_disk(smallest / g))) & (dist >= smallest)
    peaks &= dist <= params.max_radius_mm
    depth = ndi.distance_transform_edt(body) * g
    rows, cols = np.nonzero(peaks)
    order = np.argsort(-dist[rows, cols])[:60]
    out: list[_Round] = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        radius = float(dist[r, c])
        reach = int(radius / g) + 1
        window = (
            slice(max(r - reach, 0), min(r + reach + 1, v.shape[0])),
            slice(max(c - reach, 0), min(c + reach + 1, v.shape[1])),
        )
        yy, xx = np.mgrid[window]
        core = ((yy - r) ** 2 + (xx - c) ** 2) * g * g <= (0.6 * radius) ** 2
        values = v[window][core]
        values = values[values <= params.calcium_hu]
        if values.size < 4:
            continue
        median = float(np.median(values))
        q25, q75 = np.percentile(values, [25, 75])
        out.append(
            _Round(
                float(r),
                float(c),
                radius,
                median,
                float(q75 - q25),
                _walled_in_by_bone(smooth, r, c, radius, median, g),
                float(depth[r, c]),
            )
        )
    return out


def _tubes(candidates: list[list[_Candidate]], z: np.ndarray, params: PhysicsParams) -> list[_Tube]:
    """Link candidates of neighbouring sampled slices whose centres stay within a radius."""
    open_tubes: list[_Tube] = []
    done: list[_Tube] = []
    for pos, found in enumerate(candidates):
        still: list[_Tube] = []
        used: set[int] = set()
        for tube in open_tubes:
            last = tube.last
            best, best_d = None, math.inf
            for i, cand in enumerate(found):
                if i in used:
                    continue
                d = math.hypot(cand.row - last.row, cand.col - last.col) * params.grid_mm
                if d <= max(6.0, 0.8 * last.radius_mm) and d < best_d:
                    best, best_d = i, d
            if best is not None and pos - last.slice_pos == 1:
                used.add(best)
                tube.members.append(found[best])
                still.append(tube)
            else:
                done.append(tube)
        for i, cand in enumerate(found):
            if i not in used:
                still.append(_Tube([cand]))
        open_tubes = still
    done.extend(open_tubes)
    long_enough = []
    for tube in done:
        start, end = tube.members[0].slice_pos, tube.last.slice_pos
        if len(tube.members) >= 2 and abs(z[end] - z[start]) >= params.min_tube_mm:
            long_enough.append(tube)
    return long_enough


def _sinus(
    v: np.ndarray, smooth: np.ndarray, brain: np.ndarray, params: PhysicsParams
) -> tuple[float, float, float, float] | None:
    """(row, col, radius_mm, HU) of the densest blood-range region inside the inner table."""
    g = params.grid_mm
    skull = ndi.binary_dilation(~brain & (smooth > 300), _disk(2.0 / g))
    inner = brain & ~skull
    shell = inner & ~ndi.binary_erosion(inner, _disk(8.0 / g))
    blood = shell & (smooth > 20) & (smooth <= params.calcium_hu)
    if blood.sum() < 10:
        return None
    opened = ndi.binary_opening(blood & (smooth >= params.threshold_hu - 20), _disk(1.0))
    labels, n = ndi.label(opened)
    if n:
        sizes = np.bincount(labels.ravel())[1:]
        best = labels == 1 + int(np.argmax(sizes))
        if sizes.max() * g * g >= 12.0:  # >= 12 mm2 of enhanced blood: a sinus
            rows, cols = np.nonzero(best)
            values = v[best]
            radius = math.sqrt(sizes.max() * g * g / math.pi)
            return float(rows.mean()), float(cols.mean()), radius, float(np.median(values))
    # No enhanced sinus: the superior sagittal sinus lies at the midline, behind.
    rows, cols = np.nonzero(inner)
    mid_col = float(cols.mean())
    band = blood & (np.abs(np.arange(v.shape[1])[None, :] - mid_col) <= 6.0 / g)
    band &= np.arange(v.shape[0])[:, None] > float(rows.mean())
    if band.sum() < 4:
        return None
    values = v[band]
    r, c = np.nonzero(band)
    return float(r.mean()), float(c.mean()), 5.0, float(np.percentile(values, 75))


def _vessel_candidates(
    rounds: dict[int, tuple[str, list[_Round]]], n: int, params: PhysicsParams
) -> list[list[_Candidate]]:
    """Per sampled slice, the round regions that can be blood: deep enough, wide enough,
    homogeneous and not walled in by bone."""
    out: list[list[_Candidate]] = [[] for _ in range(n)]
    for pos, (region, found) in rounds.items():
        neck = region == "neck"
        for r in found:
            if r.walled or r.spread_hu > 60:  # bone-walled; or bowel content, marrow, tumour
                continue
            if r.radius_mm < (params.min_neck_radius_mm if neck else params.min_radius_mm):
                continue
            # Blood pools lie deep; cartilage, sternum and chest-wall muscle under the skin.
            if r.depth_mm < MIN_DEPTH_MM["neck" if neck else "trunk"]:
                continue
            out[pos].append(_Candidate(pos, r.row, r.col, r.radius_mm, r.hu, region))
    return out


def assess_volume(
    hu: np.ndarray,
    pixel_spacing: tuple[float, float],
    z_mm: Sequence[float] | np.ndarray,
    indices: Sequence[int],
    params: PhysicsParams | None = None,
) -> BloodPool:
    """The opinion on sampled slices ``hu`` (m, rows, cols) at ``z_mm``, series ``indices``."""
    params = params or PhysicsParams()
    if hu.ndim != 3 or hu.shape[0] == 0:
        return BloodPool.not_found("no slices to measure", params)
    coarsest = max(pixel_spacing)
    if coarsest > params.max_pixel_mm:
        return BloodPool.not_found(
            f"pixels of {coarsest:.1f} mm are too coarse to tell a vessel from bone "
            f"(at most {params.max_pixel_mm:g} mm)",
            params,
        )
    z = np.asarray(z_mm, dtype=float)
    g = params.grid_mm
    scale = (pixel_spacing[0] / g, pixel_spacing[1] / g)
    rounds: dict[int, tuple[str, list[_Round]]] = {}  # sampled position -> region, regions
    sinuses: list[_Candidate] = []
    regions: dict[str, int] = {}
    for pos in range(hu.shape[0]):
        v = _resample(hu[pos : pos + 1], pixel_spacing, g)[0]
        smooth = ndi.median_filter(v, size=3)
        body = _body(smooth)
        if body.sum() * g * g < 2000:  # < 20 cm2: no patient in this slice
            continue
        brain = _intracranial(smooth, g)
        if brain is not None:
            regions["head"] = regions.get("head", 0) + 1
            sinus = _sinus(v, smooth, brain, params)
            if sinus is not None:
                sinuses.append(_Candidate(pos, *sinus, region="head"))
            continue
        region = _region(smooth, body, g)
        regions[region] = regions.get(region, 0) + 1
        rounds[pos] = (region, _round_regions(v, smooth, body, params))
    per_slice = _vessel_candidates(rounds, hu.shape[0], params)
    tubes = _tubes(per_slice, z, params)
    best = _best(tubes, sinuses)
    if best is None:
        what = ", ".join(f"{n} {r}" for r, n in sorted(regions.items())) or "no body"
        return BloodPool.not_found(
            f"no blood pool found in {hu.shape[0]} sampled slices ({what}): no round vessel "
            f"running >= {params.min_tube_mm:.0f} mm along z and no dural sinus",
            params,
        )
    region, members = best
    hu_value = float(np.median([m.hu for m in members]))
    middle = members[len(members) // 2]
    return BloodPool(
        found=True,
        contrast=hu_value >= params.threshold_hu,
        structure=_STRUCTURES[region],
        hu=hu_value,
        slice_index=int(indices[middle.slice_pos]),
        z_mm=float(z[middle.slice_pos]),
        row=middle.row / scale[0],
        col=middle.col / scale[1],
        radius_mm=middle.radius_mm,
        threshold_hu=params.threshold_hu,
        reason=(
            f"median of {len(members)} sampled slices, "
            f"{abs(z[members[-1].slice_pos] - z[members[0].slice_pos]):.0f} mm along z"
            if len(members) > 1
            else "one sampled slice"
        ),
        rules_out=region in ("chest", "abdomen")
        and float(np.median([m.radius_mm for m in members])) >= params.rule_out_radius_mm,
    )


_STRUCTURES = {
    "chest": "chest vessel (aorta or heart)",
    "abdomen": "abdominal vessel (aorta)",
    "neck": "neck vessel (carotid or jugular)",
    "head": "dural venous sinus",
}


def _best(tubes: list[_Tube], sinuses: list[_Candidate]) -> tuple[str, list[_Candidate]] | None:
    """(region, members): the tube with the highest median HU (a vessel out-reads the muscle and organ tubes
    beside it when enhanced, and unenhanced they all read like blood), else the sinuses."""
    if tubes:
        tube = max(
            tubes, key=lambda t: (float(np.median([m.hu for m in t.members])), len(t.members))
        )
        regions = [m.region for m in tube.members]
        return max(set(regions), key=regions.count), tube.members
    if sinuses:
        return "head", sinuses
    return None


def assess(
    source: SliceSource, params: PhysicsParams | None = None, indices: Sequence[int] | None = None
) -> BloodPool:
    """The physics opinion for a sorted slice source: on ``indices`` (ascending; the slices
    preprocessing already decoded), or on up to ``max_slices`` spread over the stack."""
    params = params or PhysicsParams()
    geometry = source.geometry
    if indices is None or len(indices) == 0:
        indices = sample_indices(geometry.n_slices, params.max_slices)
    indices = list(indices)
    hu = source.read(indices)
    return assess_volume(hu, geometry.pixel_spacing, geometry.z_mm[indices], indices, params)
