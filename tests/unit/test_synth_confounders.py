"""Confounders in phantoms: what makes real unenhanced scans look enhanced (calcified
vessel walls, intracranial calcifications, the thyroid, low kV, PET/CT, tilt, a weak
bolus) is present, forceable from the spec, drawn at realistic rates and in the plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from scipy import ndimage

from ivcontrast.synth import LABEL, SeriesSpec, SyntheticSeries, series_plan
from ivcontrast.synth.anatomy.head import Z_CHOROID, Z_PINEAL
from ivcontrast.synth.confounders import kv_factors, parse_confounder
from ivcontrast.synth.physiology import patient_tissues

BONE = (LABEL["bone_cortical"], LABEL["bone_trabecular"], LABEL["teeth"])


def _head(**kw: object) -> SyntheticSeries:
    spec = dict(
        region="headneck",
        phase="none",
        seed=31,
        matrix=192,
        fov=220.0,
        slices=1,
        thickness=2.0,
        noise=5.0,
        brain=True,
        tilt=0.0,
        kvp=120,
    )
    spec.update(kw)
    return SyntheticSeries(SeriesSpec(**spec))  # type: ignore[arg-type]


def _dense_in_brain(series: SyntheticSeries, nominal_z: float) -> int:
    """Pixels over 150 HU inside the skull, at least 6 mm from any bone."""
    h = series.anatomy.patient.height_scale
    hu, labels = series.scanner.render(nominal_z * h, 0)
    brain = np.isin(labels, [LABEL["brain"], LABEL["ventricle"], LABEL["calcification"]])
    far = ndimage.distance_transform_edt(~np.isin(labels, BONE)) * series.plan.pixel_mm > 6.0
    return int(np.count_nonzero((hu > 150) & brain & far))


def test_choroid_plexus_and_pineal_are_dense_away_from_bone() -> None:
    calcified = _head(intracranial_calcium="choroid_plexus+pineal")
    clean = _head(intracranial_calcium="none")
    assert calcified.plan.intracranial_calcium == ("choroid_plexus", "pineal")
    assert not calcified.plan.contrast
    for z in (Z_CHOROID, Z_PINEAL):
        assert _dense_in_brain(calcified, z) >= 4, z
        assert _dense_in_brain(clean, z) == 0, z
    # the ventricles hold CSF: darker than the brain around them
    h = clean.anatomy.patient.height_scale
    hu, labels = clean.scanner.render(300.0 * h, 0)
    assert hu[labels == LABEL["ventricle"]].mean() < hu[labels == LABEL["brain"]].mean() - 10


def test_falx_and_basal_ganglia_calcification() -> None:
    series = _head(intracranial_calcium=("falx", "basal_ganglia"))
    h = series.anatomy.patient.height_scale
    found = set()
    for n in np.arange(285.0, 335.0, 2.0):
        clean, labels = series.scanner.clean(float(n) * h)
        calc = labels == LABEL["calcification"]
        if calc.any():
            xs = series.scanner.xs[np.nonzero(calc)[1]]
            found.add("falx" if np.abs(xs).max() < 3.0 else "basal_ganglia")
            assert clean[calc].max() > 90.0
    assert found == {"falx", "basal_ganglia"}


def _aorta_levels(series: SyntheticSeries) -> list[tuple[float, float, int]]:
    """Per level: the densest calcium on the aortic wall, the lumen's median HU and the
    wall calcium's pixel count."""
    h = series.anatomy.patient.height_scale
    out = []
    for n in np.arange(-200.0, 40.0, 6.0):
        hu, labels = series.scanner.render(float(n) * h, 0)
        lumen = labels == LABEL["aorta"]
        if lumen.sum() < 30:
            continue
        near = ndimage.binary_dilation(lumen, iterations=5) & (labels == LABEL["calcification"])
        core = ndimage.binary_erosion(lumen, iterations=3)
        if core.sum() < 5:
            continue
        wall = float(hu[near].max()) if near.any() else -1000.0
        out.append((wall, float(np.median(hu[core])), int(near.sum())))
    return out


@pytest.mark.slow
def test_calcified_aortic_wall_is_bright_while_the_blood_stays_plain() -> None:
    common = dict(
        region="chest",
        phase="none",
        seed=17,
        matrix=192,
        fov=380.0,
        slices=1,
        thickness=2.0,
        noise=5.0,
        arms="up",
        kvp=120,
        pet_ct=False,
    )
    heavy = _aorta_levels(SyntheticSeries(SeriesSpec(vessel_calcium="heavy", **common)))  # type: ignore[arg-type]
    clean = _aorta_levels(SyntheticSeries(SeriesSpec(vessel_calcium="none", **common)))  # type: ignore[arg-type]
    arcs = [(w, n) for w, _, n in heavy if w > 700]
    assert arcs, heavy
    assert max(n for _, n in arcs) >= 6  # an arc, not a speck
    assert all(lumen < 60 for _, lumen, _ in heavy)
    assert all(w == -1000.0 for w, _, _ in clean)


def test_carotid_rims_in_heavy_calcification() -> None:
    series = _head(vessel_calcium="heavy", brain=False)
    assert series.plan.vessel_calcium == "heavy"
    b = series.anatomy
    calc = [s for s in b.shapes if s.label == LABEL["calcification"] and s.tissue == "calcium_wall"]
    assert len(calc) > 10  # beads of the aortic and carotid rims


def test_low_kv_raises_bone_calcium_and_iodine() -> None:
    def at(kvp: int, phase: str) -> SyntheticSeries:
        return SyntheticSeries(
            SeriesSpec(
                region="chest",
                phase=phase,
                seed=5,
                matrix=128,
                slices=1,
                noise=5.0,
                kvp=kvp,
                bolus="normal" if phase != "none" else None,
            )
        )

    low, std = at(80, "none"), at(120, "none")
    assert low.tissue_hu["cortical"] == pytest.approx(std.tissue_hu["cortical"] * 1.3)
    assert low.tissue_hu["calcium_wall"] > std.tissue_hu["calcium_wall"]
    assert low.tissue_hu["blood_art"] == pytest.approx(std.tissue_hu["blood_art"], abs=2.0)
    t_low, t_std = low.truth(0), std.truth(0)
    bone = t_std.mask("bone_cortical")
    assert t_low.hu[bone].mean() > t_std.hu[bone].mean() + 50
    art_low, art_std = at(80, "arterial"), at(120, "arterial")
    gain = art_low.tissue_hu["blood_art"] - art_low.tissue_hu["blood"]
    assert gain == pytest.approx(
        (art_std.tissue_hu["blood_art"] - art_std.tissue_hu["blood"]) * 1.6
    )
    # drawn noise: the same dose is noisier at low kV
    noisy = series_plan(SeriesSpec(seed=5, kvp=80, pet_ct=False))
    plain = series_plan(SeriesSpec(seed=5, kvp=120, pet_ct=False))
    assert noisy.noise_sigma == pytest.approx(plain.noise_sigma * kv_factors(80)[2])


@pytest.mark.slow
def test_thyroid_is_dense_without_contrast_and_enhances_with_it() -> None:
    values = [patient_tissues(np.random.default_rng([s, 0xC1]))["thyroid"] for s in range(300)]
    assert all(55 <= v <= 120 for v in values)
    assert np.mean([80 <= v <= 120 for v in values]) > 0.75
    common = dict(region="headneck", seed=8, matrix=64, slices=1, kvp=120, thyroid_hu=100.0)
    plain = SyntheticSeries(SeriesSpec(phase="none", **common))  # type: ignore[arg-type]
    enhanced = SyntheticSeries(SeriesSpec(phase="portal_venous", **common))  # type: ignore[arg-type]
    assert plain.tissue_hu["thyroid"] == pytest.approx(100.0)
    assert plain.plan.thyroid_hu == 100.0
    assert series_plan(SeriesSpec(seed=8, region="headneck")).thyroid_hu == pytest.approx(
        patient_tissues(np.random.default_rng([8, 0xC1]))["thyroid"]
    )
    assert enhanced.tissue_hu["thyroid"] > 140.0


def test_weak_bolus_puts_the_blood_pool_at_130_to_160() -> None:
    for phase in ("arterial", "portal_venous"):
        for seed in range(4):
            spec = SeriesSpec(
                region="chest", phase=phase, seed=seed, matrix=32, slices=1, kvp=120, bolus="weak"
            )
            hu = SyntheticSeries(spec).tissue_hu
            assert 130 <= hu["blood_art"] <= 160, (phase, seed, hu["blood_art"])
            assert hu["blood_ivc"] <= hu["blood_art"] + 60
    assert series_plan(SeriesSpec(seed=1, phase="none", bolus="weak")).bolus == "none"


def test_forcing_one_confounder_changes_no_other_draw() -> None:
    drawn = series_plan(SeriesSpec(seed=44, region="headneck"))
    forced = series_plan(
        SeriesSpec(
            seed=44, region="headneck", vessel_calcium="heavy", kvp=drawn.kvp, pet_ct=drawn.pet_ct
        )
    )
    assert forced.vessel_calcium == "heavy"
    for name in (
        "noise_sigma",
        "kernel",
        "z_top",
        "thickness",
        "tilt",
        "intracranial_calcium",
        "arms",
    ):
        assert getattr(forced, name) == getattr(drawn, name), name


@pytest.mark.slow
def test_draw_rates_follow_age_and_region() -> None:
    plans = [
        series_plan(SeriesSpec(seed=s, region=("chest", "headneck")[s % 2], matrix=32))
        for s in range(60)
    ]
    by_grade: dict[str, list[int]] = {"none": [], "mild": [], "heavy": []}
    for p in plans:
        by_grade[p.vessel_calcium].append(int(p.patient["age"]))
    assert all(by_grade.values())
    assert np.mean(by_grade["none"]) < np.mean(by_grade["mild"]) < np.mean(by_grade["heavy"])
    assert sum("pineal" in p.intracranial_calcium for p in plans) > 20
    assert 2 <= sum(p.pet_ct for p in plans) <= 25
    assert sum(p.kvp <= 100 for p in plans) >= 10
    head = [p for p in plans if p.region == "headneck"]
    assert any(p.brain for p in head) and any(p.tilt != 0 for p in head)
    assert any(p.arms == "up" for p in head)
    assert all(p.tilt == 0 for p in plans if p.region == "chest")
    row = plans[0].manifest_row()
    for name in (
        "vessel_calcium",
        "intracranial_calcium",
        "thyroid_hu",
        "kvp",
        "pet_ct",
        "brain",
        "bolus",
        "tilt",
    ):
        assert name in row


def test_pet_ct_is_thick_noisy_and_reaches_the_head() -> None:
    plan = series_plan(SeriesSpec(seed=3, region="chest", pet_ct=True))
    assert plan.pet_ct and plan.thickness >= 3.0 and plan.noise_sigma >= 18.0
    assert plan.z_top > 190.0 * plan.patient["height_scale"]
    assert plan.fov_mm >= 450.0


def test_tilt_is_in_the_header_and_the_image(tmp_path: Path) -> None:
    spec = SeriesSpec(region="headneck", seed=9, matrix=96, slices=2, tilt=20.0)
    series = SyntheticSeries(spec)
    path = series.write(tmp_path / "s")[0]
    ds = pydicom.dcmread(path)
    assert float(ds.GantryDetectorTilt) == 20.0
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    assert abs(np.rad2deg(np.arcsin(abs(iop[5])))) == pytest.approx(20.0, abs=0.1)
    flat = SyntheticSeries(SeriesSpec(region="headneck", seed=9, matrix=96, slices=2, tilt=0.0))
    assert not np.array_equal(series.truth(0).labels, flat.truth(0).labels)


def test_preview_shows_the_calcified_slices(tmp_path: Path) -> None:
    spec = SeriesSpec(
        region="headneck",
        phase="none",
        seed=31,
        matrix=64,
        slices=40,
        brain=True,
        intracranial_calcium="choroid_plexus+pineal",
        vessel_calcium="heavy",
        tilt=0.0,
    )
    series = SyntheticSeries(spec)
    out = tmp_path / "p.png"
    series.write(tmp_path / "s", preview=out, preview_slices=8)
    img = Image.open(out)
    assert img.size[1] > 2 * 256  # the evenly spaced slices and the calcified ones


def test_parse_confounder() -> None:
    assert parse_confounder("kvp=80") == ("kvp", 80)
    assert parse_confounder("pet-ct=yes") == ("pet_ct", True)
    assert (
        parse_confounder("intracranial_calcium=choroid_plexus+pineal")[1] == "choroid_plexus+pineal"
    )
    with pytest.raises(ValueError):
        parse_confounder("colour=blue")
    with pytest.raises(ValueError):
        parse_confounder("kvp=loud")
