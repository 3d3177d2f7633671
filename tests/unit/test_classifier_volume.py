"""NIfTI and NRRD volumes read to the same canonical stack as DICOM."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
from test_classifier_dicom import make_phantom, write_series

from ivcontrast.classifier.dicom_series import DicomSeries
from ivcontrast.classifier.errors import VolumeError
from ivcontrast.classifier.preprocess import PreprocessConfig, preprocess
from ivcontrast.classifier.sources import open_source, volume_kind
from ivcontrast.classifier.volume import AffineVolume, Volume


def ras_array(canonical: np.ndarray) -> np.ndarray:
    """Canonical (z, rows toward P, cols toward L) to a RAS array (x toward R, y toward A, z)."""
    return np.transpose(canonical[:, ::-1, ::-1], (2, 1, 0))


def test_nifti_ras_matches_canonical(tmp_path: Path) -> None:
    hu = make_phantom(n=6, rows=40, cols=50)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[:3, 3] = (-20, -16, 50)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(ras_array(hu), affine), path)
    source = open_source(path)
    assert volume_kind(path) == "nifti"
    assert source.geometry.shape == (40, 50)
    assert source.geometry.pixel_spacing == pytest.approx((0.8, 0.8))
    np.testing.assert_allclose(source.geometry.z_mm, 50 + 2.5 * np.arange(6))
    np.testing.assert_array_equal(source.read(range(6)), hu)


def test_nifti_flipped_axes_and_scaling(tmp_path: Path) -> None:
    """Slices stored head to feet, columns stored toward the left; scl_slope applies."""
    hu = make_phantom(n=5, rows=30, cols=36)
    data = ras_array(hu)[::-1, :, ::-1]  # x toward L, z toward feet
    affine = np.diag([-1.0, 1.0, -3.0, 1.0])
    image = nib.Nifti1Image(((data.astype(np.float64) + 1024) / 2).astype(np.int16), affine)
    image.header.set_slope_inter(2.0, -1024.0)
    path = tmp_path / "ct.nii"
    nib.save(image, path)
    source = open_source(path)
    assert np.all(np.diff(source.geometry.z_mm) > 0)
    np.testing.assert_array_equal(source.read(range(5)), hu)


def test_nifti_4d_singleton_and_bad_shapes(tmp_path: Path) -> None:
    hu = make_phantom(n=3, rows=20, cols=20)
    path = tmp_path / "ct4d.nii.gz"
    nib.save(nib.Nifti1Image(ras_array(hu)[..., None], np.eye(4)), path)
    np.testing.assert_array_equal(open_source(path).read(range(3)), hu)
    bad = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.int16), np.eye(4)), bad)
    with pytest.raises(VolumeError, match=r"bad\.nii\.gz: expected a 3-D volume"):
        open_source(bad)
    junk = tmp_path / "junk.nii"
    junk.write_bytes(b"not nifti at all")
    with pytest.raises(VolumeError, match=r"junk\.nii: cannot read NIfTI"):
        open_source(junk)


@pytest.mark.parametrize("space", ["left-posterior-superior", "right-anterior-superior"])
def test_nrrd_spaces(tmp_path: Path, space: str) -> None:
    hu = make_phantom(n=4, rows=24, cols=28)
    lps = np.transpose(hu, (2, 1, 0))  # (x toward L, y toward P, z)
    if space == "left-posterior-superior":
        data, directions = lps, np.diag([0.7, 0.7, 2.0])
    else:
        data, directions = lps[::-1, ::-1, :], np.diag([0.7, 0.7, 2.0])
    path = tmp_path / "ct.nrrd"
    nrrd.write(
        str(path),
        np.ascontiguousarray(data),
        {
            "space": space,
            "space directions": directions,
            "space origin": np.array([0.0, 0.0, -30.0]),
        },
        index_order="F",
    )
    source = open_source(path)
    assert volume_kind(path) == "nrrd"
    np.testing.assert_allclose(source.geometry.z_mm, -30 + 2.0 * np.arange(4))
    np.testing.assert_array_equal(source.read(range(4)), hu)


def test_nrrd_without_patient_space_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.nrrd"
    nrrd.write(str(path), np.zeros((4, 4, 4), np.int16))
    with pytest.raises(VolumeError, match=r"plain\.nrrd: NRRD space 'missing'"):
        open_source(path)


def test_nifti_and_dicom_of_the_same_scan_agree(tmp_path: Path) -> None:
    hu = make_phantom(n=5, rows=48, cols=48)
    dicom = DicomSeries.open(write_series(tmp_path / "dcm", hu, pixel_spacing=(0.9, 0.9)))
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(ras_array(hu), np.diag([0.9, 0.9, 2.5, 1.0])), path)
    config = PreprocessConfig(size=32, min_body_area_mm2=100)
    a, b = preprocess(dicom, config), preprocess(open_source(path), config)
    np.testing.assert_allclose(a.x, b.x, atol=1e-5)


def test_volume_without_an_axis_near_z_is_not_axial() -> None:
    """A 3-D grid is sliced along its axis closest to z; rotated 45 degrees, none is close."""
    data = np.zeros((8, 16, 16), np.float32)
    sagittal = np.eye(4)
    sagittal[:3, :3] = [[0, 0, 1], [0, 1, 0], [1, 0, 0]]  # array axis 0 runs along z
    assert AffineVolume(data, sagittal, "resliced").geometry.is_axial
    rotated = np.eye(4)
    c = s = np.sqrt(0.5)
    rotated[:3, :3] = [[1, 0, 0], [0, c, -s], [0, s, c]]
    volume = AffineVolume(data, rotated, "rotated")
    assert not volume.geometry.is_axial
    with pytest.raises(VolumeError, match="rotated: not an axial stack"):
        preprocess(volume, PreprocessConfig())


def test_in_memory_volume() -> None:
    hu = make_phantom(n=3, rows=20, cols=20)
    volume = Volume.axial(hu[::-1], (1.0, 1.0), [30.0, 20.0, 10.0])
    np.testing.assert_array_equal(volume.read(range(3)), hu)
    with pytest.raises(VolumeError, match=r"array shape \(3, 20, 20\) != \(3, 5, 5\)"):
        Volume(hu, replace(volume.geometry, shape=(5, 5)))
