"""One synthetic series: geometry, slice-by-slice rendering, datasets, files, ground truth.

Memory stays bounded: slices are rendered and encoded one at a time. ``truth(i)``
renders the i-th slice (in the order ``datasets()`` yields them) with its label map and
noise-free HU, so tests can measure HU inside the vessels of the written files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from scipy import ndimage

from ivcontrast.synth.confounders import apply_kvp, apply_weak_bolus
from ivcontrast.synth.dicom import (
    padding_value,
    pixel_range,
    series_elements,
    set_pixels,
    slice_dataset,
)
from ivcontrast.synth.physiology import LABEL, Phase, patient_tissues, series_tissues
from ivcontrast.synth.preview import save_montage
from ivcontrast.synth.scanner import Acquisition, Scanner
from ivcontrast.synth.spec import SeriesKind, SeriesPlan, SeriesSpec, plan_series

log = logging.getLogger(__name__)

# Patient position -> flip (rows, columns) of the patient-ordered arrays.
_FLIPS = {"HFS": (False, False), "FFS": (False, True), "HFP": (True, True), "FFP": (True, False)}


@dataclass(frozen=True)
class SliceTruth:
    """Ground truth of one written slice, in the orientation of its pixel data.

    ``hu`` is what a reader gets from the file (stored value x slope + intercept);
    ``clean`` the phantom before texture, artifacts, noise and calibration offset;
    ``labels`` the structure at each pixel (names in ``physiology.LABELS``).
    """

    index: int
    instance: int
    slice_location: float
    hu: np.ndarray
    clean: np.ndarray
    labels: np.ndarray

    def mask(self, *names: str) -> np.ndarray:
        """Pixels labelled with any of ``names``."""
        return np.isin(self.labels, [LABEL[n] for n in names])


class SyntheticSeries:
    """A phantom CT series for one :class:`SeriesSpec`."""

    def __init__(self, spec: SeriesSpec) -> None:
        self.spec = spec
        self.plan, self.anatomy = plan_series(spec)
        plan = self.plan
        base = patient_tissues(np.random.default_rng([plan.anatomy_seed, 0xC1]))
        base["thyroid"] = plan.thyroid_hu
        rng = np.random.default_rng([plan.seed, 0xE7])
        hu = series_tissues(base, Phase(plan.phase), rng, plan.injected_dense)
        if plan.bolus == "weak":
            apply_weak_bolus(hu, base, np.random.default_rng([plan.seed, 0xB7]))
        apply_kvp(hu, base, plan.kvp)
        if plan.oral_contrast:
            hu["oesophagus_lumen"] = hu["oral_contrast"]
            hu["fluid"] = hu["oral_contrast"] * rng.uniform(0.4, 0.9)
        else:
            hu["oesophagus_lumen"] = -1000.0 if rng.random() < 0.5 else hu["fluid"]
        self.tissue_hu: Mapping[str, float] = hu
        self.acquisition = Acquisition(
            matrix=plan.matrix,
            pixel_mm=plan.pixel_mm,
            centre_x=plan.centre_x,
            centre_y=plan.centre_y,
            thickness=plan.thickness,
            spacing=plan.spacing,
            noise_sigma=plan.noise_sigma,
            noise_cutoff=plan.noise_cutoff,
            blur_mm=plan.blur_mm,
            hu_offset=plan.hu_offset,
            cupping=plan.cupping,
            fov_circle=plan.fov_circle,
            table=plan.table,
            table_gap=plan.table_gap,
            table_shell=plan.table_shell,
            prone=plan.patient_position.endswith("P"),
            tilt_deg=plan.tilt,
            beam_hardening=plan.beam_hardening,
            seed=plan.seed,
            scan_z=(plan.z_top - (plan.slices - 1) * plan.spacing, plan.z_top),
        )
        self.scanner = Scanner(self.anatomy, self.acquisition, dict(hu))
        self._constant = series_elements(plan, self._geometry(0))

    def __len__(self) -> int:
        return self.plan.slices

    # --- geometry -------------------------------------------------------------------

    def acquisition_index(self, index: int) -> int:
        """Position from the top of the scan of the ``index``-th slice written."""
        if not 0 <= index < len(self):
            raise IndexError(f"slice {index} of a {len(self)}-slice series")
        return len(self) - 1 - index if self.plan.reverse else index

    def anatomy_z(self, index: int) -> float:
        return self.plan.z_top - self.acquisition_index(index) * self.plan.spacing

    def _geometry(self, index: int) -> dict[str, object]:
        plan = self.plan
        m, d = plan.matrix, plan.pixel_mm
        if plan.kind == SeriesKind.LOCALIZER.value:
            lateral = index % 2 == 1
            width, length = self._localizer_extent()
            z0 = plan.z_top + 40.0 + plan.z_offset
            col = (0.0, 1.0, 0.0) if lateral else (1.0, 0.0, 0.0)
            corner = (
                (plan.centre_x, plan.centre_y - width / 2, z0)
                if lateral
                else (plan.centre_x - width / 2, plan.centre_y, z0)
            )
            return {
                "rows": m,
                "columns": m,
                "spacing": (length / m, width / m),
                "orientation": (*col, 0.0, 0.0, -1.0),
                "position": corner,
            }
        t = np.deg2rad(plan.tilt)
        off0 = -(m - 1) / 2 * d
        z = self.anatomy_z(index) + plan.z_offset
        origin = np.array(
            [plan.centre_x + off0, plan.centre_y + off0 * np.cos(t), z + off0 * np.sin(t)]
        )
        col_dir = np.array([1.0, 0.0, 0.0])
        row_dir = np.array([0.0, np.cos(t), np.sin(t)])
        flip_rows, flip_cols = _FLIPS[plan.patient_position]
        if flip_rows:
            origin = origin + (m - 1) * d * row_dir
            row_dir = -row_dir
        if flip_cols:
            origin = origin + (m - 1) * d * col_dir
            col_dir = -col_dir
        return {
            "rows": m,
            "columns": m,
            "spacing": (d, d),
            "orientation": (*col_dir.round(6), *row_dir.round(6)),
            "position": tuple(origin.round(4)),
            "slice_location": z,
        }

    def _localizer_extent(self) -> tuple[float, float]:
        """Width and length (mm) a topogram covers."""
        return 500.0, 320.0 if self.plan.region == "headneck" else 480.0

    # --- pixels -----------------------------------------------------------------------

    def _pixels(
        self, index: int, with_clean: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Stored values, labels and (optionally) clean HU, in pixel-data orientation."""
        plan = self.plan
        if plan.kind == SeriesKind.LOCALIZER.value:
            raw = self._localizer(index)
            zeros = np.zeros(raw.shape, dtype=np.uint8)
            return raw, zeros, raw.astype(np.float32)
        k = self.acquisition_index(index)
        z = self.anatomy_z(index)
        hu, labels = self.scanner.render(z, k)
        clean = self.scanner.clean(z)[0] if with_clean else None
        lo, hi = pixel_range(plan)
        if plan.sop_class == "mr":
            raw = np.clip(_mr_signal(hu, labels), lo, hi)
        else:
            raw = np.rint(hu - plan.rescale_intercept)
            pad = padding_value(plan)
            padded = hu <= -3000.0
            np.clip(raw, lo, hi, out=raw)
            if pad is not None:
                raw[padded] = pad
        flip_rows, flip_cols = _FLIPS[plan.patient_position]
        sl = (slice(None, None, -1 if flip_rows else 1), slice(None, None, -1 if flip_cols else 1))
        return raw[sl].astype(np.int32), labels[sl], None if clean is None else clean[sl]

    def _localizer(self, index: int) -> np.ndarray:
        """A projection radiograph (topogram) through the phantom: AP, then lateral."""
        plan = self.plan
        m = plan.matrix
        lateral = index % 2 == 1
        width, length = self._localizer_extent()
        n = min(m, 96)
        zs = plan.z_top + 40.0 - (np.arange(n) + 0.5) * length / n
        xs = (plan.centre_x + (np.arange(n) - (n - 1) / 2) * width / n).astype(np.float32)
        ys = (plan.centre_y + (np.arange(n) - (n - 1) / 2) * width / n).astype(np.float32)
        proj = np.empty((n, n), dtype=np.float32)
        for i, z in enumerate(zs):
            canvas = self.scanner._paint(xs, ys, float(z))
            mu = np.clip((canvas.hu + 1000.0) / 1000.0, 0.0, None)
            proj[i] = mu.sum(axis=1 if lateral else 0) * (width / n)
        img = ndimage.zoom(proj, (m / n, m / n), order=1)
        rng = np.random.default_rng([plan.seed, index, 0x70])
        img = img * (4095.0 / 450.0) + rng.normal(0, 8.0, img.shape)
        return np.clip(np.rint(img), 0, 4095).astype(np.int32)

    # --- outputs ------------------------------------------------------------------------

    def truth(self, index: int) -> SliceTruth:
        """Ground truth of the ``index``-th slice written (0-based)."""
        raw, labels, clean = self._pixels(index, with_clean=True)
        assert clean is not None
        plan = self.plan
        hu = raw.astype(np.float32)
        if plan.sop_class != "mr" and plan.kind != SeriesKind.LOCALIZER.value:
            hu += plan.rescale_intercept
        geo = self._geometry(index)
        return SliceTruth(
            index=index,
            instance=index + 1,
            slice_location=float(geo.get("slice_location", 0.0)),  # type: ignore[arg-type]
            hu=hu,
            clean=clean,
            labels=labels,
        )

    def dataset(self, index: int) -> Dataset:
        """The ``index``-th dataset (InstanceNumber index + 1), with file meta."""
        return self._build(index)[0]

    def _build(self, index: int) -> tuple[Dataset, np.ndarray, np.ndarray]:
        plan = self.plan
        geo = self._geometry(index)
        constant = self._constant
        if plan.kind == SeriesKind.LOCALIZER.value:
            constant = series_elements(plan, geo)
        ds = slice_dataset(
            plan,
            constant,
            instance=index + 1,
            position=geo["position"],  # type: ignore[arg-type]
            slice_location=float(geo.get("slice_location", 0.0)),  # type: ignore[arg-type]
            acquisition_seconds=0.5 * self.acquisition_index(index) * plan.spacing / 20.0,
        )
        raw, labels, _ = self._pixels(index)
        set_pixels(ds, raw, plan)
        return ds, raw, labels

    def datasets(self) -> Iterator[Dataset]:
        for i in range(len(self)):
            yield self.dataset(i)

    def file_name(self, index: int) -> str:
        return f"{self.plan.modality}{index + 1:05d}.dcm"

    def display_hu(self, raw: np.ndarray) -> np.ndarray:
        """Stored values -> HU as a viewer shows them (padding as air)."""
        if self.plan.sop_class == "mr" or self.plan.kind == SeriesKind.LOCALIZER.value:
            return raw.astype(np.float32) - 1000.0
        hu = raw.astype(np.float32) + self.plan.rescale_intercept
        np.maximum(hu, -1024.0, out=hu)
        return hu

    def write(
        self, folder: str | Path, preview: str | Path | None = None, preview_slices: int = 12
    ) -> list[Path]:
        """Write every slice into ``folder`` (created); returns the paths in order.

        ``preview``: also write a PNG montage (soft-tissue window) of evenly spaced slices
        and of the slices with the most calcification (the confounders, where present).
        """
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        n = len(self)
        even = max(preview_slices - _CONFOUNDER_TILES, 1)
        keep = set(np.linspace(0, n - 1, min(even, n)).round().astype(int).tolist())
        shown: list[tuple[int, np.ndarray]] = []
        calcified: list[tuple[int, int, np.ndarray]] = []
        paths = []
        calcium = LABEL["calcification"]
        for i in range(n):
            path = out / self.file_name(i)
            ds, raw, labels = self._build(i)
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
            if preview is None:
                continue
            if i in keep:
                shown.append((i, self.display_hu(raw)))
            elif (count := int(np.count_nonzero(labels == calcium))) > 0:
                calcified.append((count, i, self.display_hu(raw)))
                calcified = _spread_top(calcified, _CONFOUNDER_TILES, max(n // 12, 1))
        if preview is not None:
            shown = sorted(shown + [(i, hu) for _, i, hu in calcified], key=lambda t: t[0])
            self.save_preview(preview, shown)
        log.debug("wrote %d slices of series %s to %s", len(paths), self.plan.series_uid, out)
        return paths

    def save_preview(self, path: str | Path, shown: list[tuple[int, np.ndarray]]) -> Path:
        plan = self.plan
        loc = plan.kind == SeriesKind.LOCALIZER.value
        title = (
            f"{plan.region} {plan.phase} seed={plan.seed} {plan.manufacturer} {plan.kernel} "
            f"{plan.thickness:g}mm noise={plan.noise_sigma:.0f}HU tag={plan.tag_state}\n"
            f"{plan.kvp}kV tilt={plan.tilt:.0f} arms={plan.arms} pet_ct={int(plan.pet_ct)} "
            f"brain={int(plan.brain)} bolus={plan.bolus} vessel_ca={plan.vessel_calcium} "
            f"head_ca={'+'.join(plan.intracranial_calcium) or 'none'} "
            f"thyroid={plan.thyroid_hu:.0f}HU bh={plan.beam_hardening:.2f}"
        )
        captions = [f"#{i + 1} z={self.anatomy_z(i) + plan.z_offset:.0f}" for i, _ in shown]
        return save_montage(
            path,
            [hu for _, hu in shown],
            captions=captions,
            title=title,
            level=1000.0 if loc else 40.0,
            width=3000.0 if loc else 400.0,
        )


_CONFOUNDER_TILES = 4  # preview tiles kept for the slices with the most calcification


def _spread_top(
    items: list[tuple[int, int, np.ndarray]], k: int, gap: int
) -> list[tuple[int, int, np.ndarray]]:
    """The ``k`` items with the largest count whose slice indices lie ``gap`` apart."""
    out: list[tuple[int, int, np.ndarray]] = []
    for item in sorted(items, key=lambda t: -t[0]):
        if all(abs(item[1] - o[1]) >= gap for o in out):
            out.append(item)
        if len(out) == k:
            break
    return out


def _mr_signal(hu: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A crude T1-like signal for the non-CT eligibility cases: fat bright, air dark."""
    signal = np.interp(
        hu, [-1000, -120, -60, 0, 60, 300, 1500], [0, 1800, 1500, 700, 900, 1200, 200]
    )
    signal[labels == LABEL["fat"]] = 1900
    return np.rint(signal)


def generate_series(spec: SeriesSpec) -> Iterator[Dataset]:
    """Datasets of one series, one slice at a time (InstanceNumber 1, 2, ...)."""
    return SyntheticSeries(spec).datasets()


def write_series(
    spec: SeriesSpec, folder: str | Path, preview: str | Path | None = None
) -> list[Path]:
    """Write one series into ``folder``; returns the file paths in instance order."""
    return SyntheticSeries(spec).write(folder, preview=preview)


def slice_truth(spec: SeriesSpec, index: int) -> SliceTruth:
    """Ground truth of the ``index``-th slice of ``spec``'s series."""
    return SyntheticSeries(spec).truth(index)


def series_plan(spec: SeriesSpec) -> SeriesPlan:
    """The drawn values of a series without rendering any pixel."""
    return plan_series(spec)[0]
