"""The labels are physically true: HU measured in the written files, inside the
generator's own vessel masks, falls in the range of each phase; the confounders are
present in both classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from ivcontrast.synth import LABEL, Phase, SeriesSpec, SyntheticSeries

# Blood-pool HU by phase at 120 kV with a normal bolus, widened by the calibration
# offset (+-10 HU) and the error of a mean over an eroded vessel mask (+-5 HU).
ARTERY_RANGE = {
    Phase.NONE: (15.0, 65.0),
    Phase.ARTERIAL: (235.0, 465.0),
    Phase.PORTAL_VENOUS: (135.0, 265.0),
    Phase.DELAYED: (85.0, 155.0),
}


def _hu_from_file(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _vessel_mean(
    series: SyntheticSeries, path: Path, index: int, names: tuple[str, ...]
) -> float | None:
    truth = series.truth(index)
    hu = _hu_from_file(path)
    np.testing.assert_array_equal(hu, truth.hu)  # the truth describes the written pixels
    core = ndimage.binary_erosion(truth.mask(*names), iterations=1)
    if core.sum() < 6:
        return None
    return float(hu[core].mean())


def _measure(tmp_path: Path, spec: SeriesSpec, names: tuple[str, ...]) -> list[float]:
    series = SyntheticSeries(spec)
    paths = series.write(tmp_path / f"{spec.region}-{spec.phase}-{spec.seed}")
    values = [_vessel_mean(series, p, i, names) for i, p in enumerate(paths)]
    return [v for v in values if v is not None]


@pytest.mark.parametrize("phase", list(Phase))
def test_chest_aorta_hu_matches_the_phase(tmp_path: Path, phase: Phase) -> None:
    spec = SeriesSpec(
        region="chest",
        phase=phase,
        seed=101,
        matrix=192,
        slices=6,
        thickness=5.0,
        spacing=30.0,
        noise=12.0,
        arms="up",
        kvp=120,
        bolus="normal",
    )
    values = _measure(tmp_path, spec, ("aorta",))
    assert len(values) >= 3, "the aorta should be in most chest slices"
    lo, hi = ARTERY_RANGE[phase]
    assert lo <= min(values) and max(values) <= hi, (phase, values)


@pytest.mark.parametrize("phase", list(Phase))
def test_neck_carotid_hu_matches_the_phase(tmp_path: Path, phase: Phase) -> None:
    spec = SeriesSpec(
        region="headneck",
        phase=phase,
        seed=202,
        matrix=256,
        fov=200.0,
        slices=5,
        thickness=3.0,
        spacing=15.0,
        noise=10.0,
        kvp=120,
        bolus="normal",
    )
    series = SyntheticSeries(spec)
    paths = series.write(tmp_path / "neck")
    values = []
    for i, path in enumerate(paths):
        truth = series.truth(i)
        hu = _hu_from_file(path)
        for label in (LABEL["carotid"],):
            lab, n = ndimage.label(ndimage.binary_erosion(truth.labels == label))
            for k in range(1, n + 1):
                if (lab == k).sum() >= 4:
                    values.append(float(hu[lab == k].mean()))
    assert len(values) >= 4, "both carotids should be in the neck slices"
    lo, hi = ARTERY_RANGE[phase]
    # A small vessel loses some contrast to partial volume; a vessel mean may sit a
    # little inside the range but never outside the phase's neighbours.
    assert lo - 15 <= min(values) and max(values) <= hi + 10, (phase, values)


@pytest.mark.slow
def test_classes_separate_on_the_same_patient(tmp_path: Path) -> None:
    """Same anatomy and scanner seed; only the phase differs: every enhanced blood pool
    is denser than the plain one, and arteries beat veins in the arterial phase."""
    common = dict(
        region="chest",
        seed=7,
        anatomy_seed=3,
        matrix=160,
        slices=4,
        thickness=5.0,
        spacing=40.0,
        noise=8.0,
        arms="up",
        kvp=120,
        bolus="normal",
    )
    means: dict[Phase, float] = {}
    for phase in Phase:
        spec = SeriesSpec(phase=phase, **common)  # type: ignore[arg-type]
        means[phase] = float(np.mean(_measure(tmp_path, spec, ("aorta",))))
    assert (
        means[Phase.NONE]
        < means[Phase.DELAYED]
        < means[Phase.PORTAL_VENOUS]
        < means[Phase.ARTERIAL]
    )


def test_arterial_phase_arteries_outshine_jugular_veins(tmp_path: Path) -> None:
    spec = SeriesSpec(
        region="headneck",
        phase="arterial",
        seed=5,
        matrix=256,
        fov=200.0,
        slices=3,
        thickness=3.0,
        spacing=20.0,
        noise=8.0,
    )
    series = SyntheticSeries(spec)
    hu = series.tissue_hu
    assert hu["blood_art"] > hu["blood_jugular"] + 50
    truth = series.truth(1)
    art = truth.hu[ndimage.binary_erosion(truth.mask("carotid"))]
    vein = truth.hu[ndimage.binary_erosion(truth.mask("jugular_vein"))]
    assert art.size and vein.size
    assert art.mean() > vein.mean() + 40


def test_confounders_exist_without_contrast(tmp_path: Path) -> None:
    """Native thyroid is dense, bone and calcium are bright: brightness alone is not contrast."""
    spec = SeriesSpec(
        region="headneck",
        phase="none",
        seed=11,
        matrix=256,
        fov=200.0,
        slices=4,
        thickness=3.0,
        spacing=10.0,
        noise=8.0,
    )
    series = SyntheticSeries(spec)
    z_thyroid = [i for i in range(len(series)) if series.truth(i).mask("thyroid").sum() > 20]
    assert series.tissue_hu["thyroid"] >= 60.0
    assert series.tissue_hu["blood_art"] <= 50.0
    if z_thyroid:
        t = series.truth(z_thyroid[0])
        assert (
            t.hu[ndimage.binary_erosion(t.mask("thyroid"))].mean() > series.tissue_hu["blood_art"]
        )
    bone = series.truth(1)
    assert (bone.hu[bone.mask("bone_cortical")] > 300).any()


def test_hu_of_tissues_resembles_real_ct() -> None:
    """Fat, muscle, unenhanced blood and lung sit where the real scans in shared/realct put
    them (fat ~-100, muscle 30-60, blood 30-50, lung ~-850)."""
    for seed in range(5):
        hu = SyntheticSeries(SeriesSpec(seed=seed, matrix=32, slices=1)).tissue_hu
        assert -120 <= hu["fat"] <= -80
        assert 30 <= hu["muscle"] <= 60
        assert 30 <= hu["blood"] <= 50
        assert -890 <= hu["lung"] <= -810
