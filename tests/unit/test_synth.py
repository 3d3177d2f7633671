"""The synthetic series: determinism, header variants, geometry, tags, manifest, preview."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from ivcontrast.synth import (
    DEFAULT_TAG_RATES,
    SeriesSpec,
    SyntheticSeries,
    TagState,
    generate_series,
    series_plan,
    slice_truth,
    write_series,
)
from ivcontrast.synth.confounders import kv_factors
from ivcontrast.synth.manifest import read_manifest, write_manifest
from ivcontrast.synth.preview import montage, window
from ivcontrast.synth.spec import NO_AGENT, draw_tag_state, tag_value

SMALL = dict(matrix=64, slices=4, thickness=5.0, spacing=20.0)


def _hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_fixed_seed_gives_identical_bytes(tmp_path: Path) -> None:
    spec = SeriesSpec(region="headneck", phase="arterial", seed=42, **SMALL)  # type: ignore[arg-type]
    a = write_series(spec, tmp_path / "a")
    b = write_series(spec, tmp_path / "b")
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes()
    other = write_series(
        SeriesSpec(region="headneck", phase="arterial", seed=43, **SMALL), tmp_path / "c"
    )  # type: ignore[arg-type]
    assert a[0].read_bytes() != other[0].read_bytes()
    da, dc = pydicom.dcmread(a[0]), pydicom.dcmread(other[0])
    assert da.SeriesInstanceUID != dc.SeriesInstanceUID
    assert da.SOPInstanceUID != dc.SOPInstanceUID


def test_any_slice_renders_alone_as_in_the_series() -> None:
    spec = SeriesSpec(seed=3, **SMALL)  # type: ignore[arg-type]
    datasets = list(generate_series(spec))
    assert [int(ds.InstanceNumber) for ds in datasets] == [1, 2, 3, 4]
    alone = slice_truth(spec, 2)
    np.testing.assert_array_equal(_hu(datasets[2]), alone.hu)


def test_datasets_do_not_share_elements() -> None:
    a, b = list(generate_series(SeriesSpec(seed=1, matrix=32, slices=2)))
    a.PatientName = "CHANGED^ONE"
    a.ImageType[0] = "DERIVED"
    assert b.PatientName != "CHANGED^ONE"
    assert b.ImageType[0] == "ORIGINAL"


def test_ct_header_is_realistic() -> None:
    ds = next(iter(generate_series(SeriesSpec(seed=8, phase="portal_venous", **SMALL))))  # type: ignore[arg-type]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.Modality == "CT"
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    for keyword in (
        "Manufacturer",
        "KVP",
        "ConvolutionKernel",
        "PatientPosition",
        "FrameOfReferenceUID",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "SliceLocation",
        "PixelSpacing",
        "SliceThickness",
        "StudyDate",
        "StudyInstanceUID",
        "SeriesInstanceUID",
    ):
        assert keyword in ds, keyword
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID):
        assert len(uid) <= 64 and all(part.isdigit() for part in uid.split("."))


def test_same_anatomy_seed_is_one_patient_in_one_study() -> None:
    a = series_plan(SeriesSpec(seed=1, anatomy_seed=9, phase="none", matrix=32, slices=2))
    b = series_plan(SeriesSpec(seed=2, anatomy_seed=9, phase="arterial", matrix=32, slices=2))
    assert a.study_uid == b.study_uid and a.patient_id == b.patient_id
    assert a.frame_uid == b.frame_uid
    assert a.series_uid != b.series_uid
    assert a.patient == b.patient


@pytest.mark.parametrize(
    ("signed", "intercept", "dtype"),
    [
        (False, -1024, np.uint16),
        (True, -1024, np.int16),
        (True, 0, np.int16),
        (False, -1000, np.uint16),
    ],
)
def test_pixel_representation_and_rescale(signed: bool, intercept: int, dtype: type) -> None:
    spec = SeriesSpec(seed=4, signed=signed, rescale_intercept=intercept, matrix=64, slices=1)
    series = SyntheticSeries(spec)
    ds = series.dataset(0)
    assert ds.PixelRepresentation == int(signed)
    assert float(ds.RescaleIntercept) == intercept
    arr = ds.pixel_array
    assert arr.dtype == dtype
    hu = _hu(ds)
    truth = series.truth(0)
    np.testing.assert_array_equal(hu, truth.hu)
    body = ndimage.binary_erosion(truth.labels > 0, iterations=2)
    assert hu[body].max() > 200  # bone survives every encoding
    assert hu.min() >= -1024 or "PixelPaddingValue" in ds


@pytest.mark.parametrize("syntax", ["rle", "jpeg2000", "implicit"])
def test_transfer_syntaxes_are_lossless(tmp_path: Path, syntax: str) -> None:
    plain = SeriesSpec(seed=6, manufacturer="GE MEDICAL SYSTEMS", matrix=64, slices=2)
    packed = SeriesSpec(
        seed=6, manufacturer="GE MEDICAL SYSTEMS", matrix=64, slices=2, transfer_syntax=syntax
    )
    a = [pydicom.dcmread(p) for p in write_series(plain, tmp_path / "plain")]
    b = [pydicom.dcmread(p) for p in write_series(packed, tmp_path / syntax)]
    assert b[0].file_meta.TransferSyntaxUID != a[0].file_meta.TransferSyntaxUID
    for da, db in zip(a, b, strict=True):
        np.testing.assert_array_equal(da.pixel_array, db.pixel_array)
    assert (a[0].pixel_array == -2000).any(), "GE writes padding outside the circle"
    assert int(a[0].PixelPaddingValue) == -2000


def test_reverse_order_numbers_from_the_feet() -> None:
    fwd = list(generate_series(SeriesSpec(seed=2, **SMALL)))  # type: ignore[arg-type]
    rev = list(generate_series(SeriesSpec(seed=2, reverse=True, **SMALL)))  # type: ignore[arg-type]
    z_fwd = [float(ds.ImagePositionPatient[2]) for ds in fwd]
    z_rev = [float(ds.ImagePositionPatient[2]) for ds in rev]
    assert z_fwd == sorted(z_fwd, reverse=True)
    assert z_rev == sorted(z_rev)
    assert np.allclose(np.diff(z_rev), 20.0)
    assert [float(ds.SliceLocation) for ds in rev] == z_rev


def _patient_xy(ds: pydicom.Dataset, mask: np.ndarray) -> np.ndarray:
    """Patient coordinates (mm) of a mask's centroid, from the header's geometry."""
    r, c = np.argwhere(mask).mean(axis=0)
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    ipp = np.array(ds.ImagePositionPatient, dtype=float)
    dr, dc = (float(v) for v in ds.PixelSpacing)
    return ipp + c * dc * iop[:3] + r * dr * iop[3:]


@pytest.mark.parametrize("position", ["FFS", "HFP", "FFP"])
def test_patient_position_keeps_anatomy_in_place(position: str) -> None:
    """Flipped pixels with a matching orientation: the aorta lands at the same patient
    coordinates as in a head-first supine series."""
    base = dict(region="chest", seed=12, matrix=128, slices=1, arms="up", patient_position="HFS")
    hfs = SyntheticSeries(SeriesSpec(**base))  # type: ignore[arg-type]
    other = SyntheticSeries(SeriesSpec(**dict(base, patient_position=position)))  # type: ignore[arg-type]
    a, b = hfs.truth(0), other.truth(0)
    assert not np.array_equal(a.labels, b.labels)
    pa = _patient_xy(hfs.dataset(0), a.mask("aorta"))
    pb = _patient_xy(other.dataset(0), b.mask("aorta"))
    # DS rounding only; a prone patient flattens its front on the table, which moves the
    # field of view's centre, so the vessel is sampled on a shifted grid (< 1/2 pixel)
    pixel = float(hfs.dataset(0).PixelSpacing[0])
    np.testing.assert_allclose(pa, pb, atol=0.01 if position == "FFS" else pixel / 2)
    assert other.dataset(0).PatientPosition == position


def test_gantry_tilt_is_in_the_orientation() -> None:
    ds = SyntheticSeries(SeriesSpec(seed=1, tilt=12.0, matrix=64, slices=2)).dataset(0)
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    assert iop[:3].tolist() == [1.0, 0.0, 0.0]
    assert iop[5] == pytest.approx(np.sin(np.deg2rad(12.0)), abs=1e-5)
    assert float(ds.GantryDetectorTilt) == 12.0


def test_localizer_derived_and_non_ct_series() -> None:
    loc = list(generate_series(SeriesSpec(seed=1, kind="localizer", matrix=64)))
    assert len(loc) == 2
    assert list(loc[0].ImageType) == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    assert [round(float(v)) for v in loc[0].ImageOrientationPatient] == [1, 0, 0, 0, 0, -1]
    assert [round(float(v)) for v in loc[1].ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
    assert loc[0].pixel_array.std() > 50  # a projection, not an empty image
    derived = next(
        iter(
            generate_series(
                SeriesSpec(
                    seed=1, image_type=("DERIVED", "SECONDARY", "AXIAL"), matrix=32, slices=1
                )
            )
        )
    )
    assert derived.ImageType[0] == "DERIVED"
    mr = next(iter(generate_series(SeriesSpec(seed=1, sop_class="mr", matrix=32, slices=1))))
    assert mr.Modality == "MR" and mr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert "RescaleIntercept" not in mr
    sc = next(iter(generate_series(SeriesSpec(seed=1, sop_class="sc", matrix=32, slices=1))))
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.Modality == "CT"
    assert list(sc.ImageType[:2]) == ["DERIVED", "SECONDARY"]


@pytest.mark.parametrize("contrast", [True, False])
def test_tag_values_follow_the_state(contrast: bool) -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        correct = tag_value(rng, contrast, TagState.CORRECT)
        wrong = tag_value(rng, contrast, TagState.WRONG)
        missing = tag_value(rng, contrast, TagState.MISSING)
        assert correct and wrong
        assert (correct not in NO_AGENT) == contrast
        assert (wrong not in NO_AGENT) != contrast
        assert missing in (None, "")


def test_default_tag_rates_mirror_the_study() -> None:
    rng = np.random.default_rng(1)
    states = [draw_tag_state(rng, DEFAULT_TAG_RATES) for _ in range(4000)]
    bad = sum(s is not TagState.CORRECT for s in states) / len(states)
    assert bad == pytest.approx(0.756, abs=0.025)


def test_tag_in_the_header(tmp_path: Path) -> None:
    wrong = next(
        iter(
            generate_series(SeriesSpec(seed=3, phase="arterial", tag="wrong", matrix=32, slices=1))
        )
    )
    assert wrong.ContrastBolusAgent in NO_AGENT
    right = next(
        iter(
            generate_series(
                SeriesSpec(seed=3, phase="arterial", tag="correct", matrix=32, slices=1)
            )
        )
    )
    assert right.ContrastBolusAgent not in NO_AGENT and right.ContrastBolusRoute == "IV"
    plain = SyntheticSeries(SeriesSpec(seed=5, phase="none", tag="missing", matrix=32, slices=1))
    ds = plain.dataset(0)
    assert ds.get("ContrastBolusAgent", "") == ""
    assert plain.plan.manifest_row()["tag_present"] == ("ContrastBolusAgent" in ds)


@pytest.mark.parametrize(
    "bad",
    [
        dict(matrix=8),
        dict(transfer_syntax="jpeg-xl"),
        dict(rescale_intercept=0, signed=False),
        dict(rescale_intercept=-512),
        dict(tag_rates=(0.5, 0.5, 0.5)),
        dict(patient_position="XYZ"),
        dict(phase="venous"),
        dict(noise=-1.0),
    ],
)
def test_invalid_specs_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        SeriesSpec(**bad)


@pytest.mark.slow
def test_randomisation_covers_the_acquisition_space() -> None:
    plans = [
        series_plan(SeriesSpec(seed=s, region=("chest", "headneck")[s % 2])) for s in range(24)
    ]
    assert len({p.manufacturer for p in plans}) >= 3
    assert len({p.kernel for p in plans}) >= 6
    assert len({p.thickness for p in plans}) >= 4
    assert {p.matrix for p in plans} <= {256, 512}
    # 5-40 HU at 120 kV; low kV is noisier (x1.45 at 80 kV), low-dose PET/CT 20-55 HU
    sigmas = [p.noise_sigma for p in plans]
    assert min(sigmas) >= 4.5 and max(sigmas) <= 65 and max(sigmas) / min(sigmas) > 2
    for p in plans:
        assert p.noise_sigma <= (55 if p.pet_ct else 40) * kv_factors(p.kvp)[2] + 1e-6
    offsets = [p.hu_offset for p in plans]
    assert max(abs(o) for o in offsets) <= 10 and np.std(offsets) > 2
    for p in plans:
        assert 30 <= p.slices <= 600
        assert 0.625 <= p.thickness <= 5.0
        assert 180 <= p.fov_mm <= 500
    assert len({p.patient["fat_mm"] for p in plans}) >= 20


def test_manifest_round_trip(tmp_path: Path) -> None:
    rows = [series_plan(SeriesSpec(seed=s, matrix=32, slices=2)).manifest_row() for s in range(2)]
    for i, row in enumerate(rows):
        row["folder"] = f"s{i}"
        row["files"] = 2
    path = write_manifest(tmp_path / "m.csv", rows)
    back = read_manifest(path)
    assert [r["series_uid"] for r in back] == [r["series_uid"] for r in rows]
    assert list(back[0])[:4] == ["folder", "files", "contrast", "phase"]
    assert back[0]["contrast"] in ("0", "1")


def test_preview_montage() -> None:
    img = montage(
        [np.full((40, 40), 40.0), np.full((40, 40), -1000.0)],
        captions=["a", "b"],
        title="t",
        tile=64,
    )
    arr = np.asarray(img)
    assert arr.shape == (18 + 64 + 14, 128)
    assert arr[18 + 10, 10] == window(np.array(40.0)) and arr[18 + 10, 74] == 0
