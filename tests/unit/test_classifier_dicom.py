"""DicomSeries: header-first reading, sorting along the normal, decoding, rescale, padding.

``make_phantom`` and ``write_series`` build small CT series here (other classifier tests import
them): a body ellipse, an "aorta" whose HU encodes the slice index, a bone marker on the
patient's left (image right) and one anterior (image top), and a table below the body.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from ivcontrast.classifier.dicom_series import DicomSeries, group_series
from ivcontrast.classifier.errors import VolumeError
from ivcontrast.classifier.sources import open_source

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def make_phantom(
    n: int = 10, rows: int = 96, cols: int = 112, contrast: bool = False, seed: int = 0
) -> np.ndarray:
    """Canonical HU (n, rows, cols), even integers (so slope 2 stores them exactly)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:rows, :cols].astype(float)
    hu = np.full((n, rows, cols), -1000.0)
    body = ((yy - 0.5 * rows) / (0.3 * rows)) ** 2 + ((xx - 0.5 * cols) / (0.38 * cols)) ** 2 <= 1
    hu[:, body] = 40.0
    aorta = (yy - 0.55 * rows) ** 2 + (xx - 0.55 * cols) ** 2 <= (0.06 * rows) ** 2
    left = (yy - 0.5 * rows) ** 2 + (xx - 0.8 * cols) ** 2 <= (0.04 * rows) ** 2
    anterior = (yy - 0.27 * rows) ** 2 + (xx - 0.5 * cols) ** 2 <= (0.04 * rows) ** 2
    table = (np.abs(yy - 0.88 * rows) <= 1) & (np.abs(xx - 0.5 * cols) <= 0.4 * cols)
    for k in range(n):
        hu[k, aorta] = (260.0 if contrast else 40.0) + 4 * k  # the slice's signature
    hu[:, left] = 700.0
    hu[:, anterior] = 500.0
    hu[:, table] = 300.0
    hu += rng.normal(0, 6, hu.shape)
    return np.maximum(2 * np.round(hu / 2), -1024).astype(np.int16)


def write_series(
    folder: Path,
    hu: np.ndarray,
    *,
    pixel_spacing: tuple[float, float] = (0.8, 0.8),
    slice_mm: float = 2.5,
    iop: Sequence[float] = AXIAL,
    stored: Callable[[np.ndarray], np.ndarray] = lambda a: a,
    signed: bool = True,
    slope: float = 1.0,
    intercept: float = -1024.0,
    bits_stored: int | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    instance_numbers: Sequence[int] | None = None,
    padding: tuple[int, int | None, np.ndarray] | None = None,
    drop: Sequence[str] = (),
    series_uid: str | None = None,
) -> list[Path]:
    """One file per slice of ``hu``; slice k lies k * slice_mm along the head-ward normal.

    ``stored`` maps a canonical slice to the array as stored under ``iop``. ``padding`` is
    (PixelPaddingValue, PixelPaddingRangeLimit or None, mask of padded pixels in the canonical
    slice). Returns the paths in a shuffled order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    right, down = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(right, down)
    normal /= np.linalg.norm(normal)
    if normal[int(np.argmax(np.abs(normal)))] < 0:
        normal = -normal
    study, series = generate_uid(), series_uid or generate_uid()
    numbers = (
        list(instance_numbers) if instance_numbers is not None else list(range(1, len(hu) + 1))
    )
    paths = []
    for k, plane in enumerate(hu):
        values = (plane.astype(np.float64) - intercept) / slope
        if padding is not None:
            values[padding[2]] = padding[0]
        array = stored(np.round(values)).astype(np.int16 if signed else np.uint16)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality = "CT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = numbers[k]
        ds.ImagePositionPatient = [
            round(float(v), 4) for v in (np.array([-40.0, -35.0, 100.0]) + k * slice_mm * normal)
        ]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in iop]
        ds.PixelSpacing = list(pixel_spacing)
        ds.SliceThickness = slice_mm
        ds.Rows, ds.Columns = array.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored or 16
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.RescaleType = "HU"
        if padding is not None:
            ds.PixelPaddingValue = padding[0]
            if padding[1] is not None:
                ds.PixelPaddingRangeLimit = padding[1]
        ds.PixelData = array.tobytes()
        for keyword in drop:
            if keyword in ds:
                delattr(ds, keyword)
        if transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            ds.file_meta.TransferSyntaxUID = transfer_syntax
        else:
            ds.compress(transfer_syntax)
        path = folder / f"{generate_uid()}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    random.Random(len(paths)).shuffle(paths)
    return paths


def aorta_signature(series_hu: np.ndarray) -> np.ndarray:
    """Mean HU in the aorta of each slice (which encodes the original slice index)."""
    _, rows, cols = series_hu.shape
    yy, xx = np.mgrid[:rows, :cols]
    core = (yy - 0.55 * rows) ** 2 + (xx - 0.55 * cols) ** 2 <= (0.03 * rows) ** 2
    return series_hu[:, core].mean(axis=1)


def test_shuffled_files_sort_by_position_not_instance_number(tmp_path: Path) -> None:
    hu = make_phantom(n=9)
    scrambled = [5, 1, 9, 3, 7, 2, 8, 4, 6]
    paths = write_series(tmp_path, hu, instance_numbers=scrambled)
    series = DicomSeries.open(paths)
    assert series.geometry.n_slices == 9
    assert np.allclose(np.diff(series.geometry.z_mm), 2.5)
    assert series.geometry.slice_spacing == pytest.approx(2.5)
    assert series.geometry.is_axial
    read = series.read(range(9))
    assert read.dtype == np.float32
    np.testing.assert_array_equal(read, np.maximum(hu, -1024))


@pytest.mark.parametrize(
    ("signed", "slope", "intercept"),
    [(False, 1.0, -1024.0), (True, 2.0, -1000.0), (True, 1.0, 0.0), (False, 2.0, -1024.0)],
)
def test_signedness_and_rescale(
    tmp_path: Path, signed: bool, slope: float, intercept: float
) -> None:
    hu = make_phantom(n=4)
    series = DicomSeries.open(
        write_series(tmp_path, hu, signed=signed, slope=slope, intercept=intercept)
    )
    np.testing.assert_array_equal(series.read(range(4)), np.maximum(hu, -1024))


@pytest.mark.parametrize(
    "syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless, ImplicitVRLittleEndian]
)
def test_compressed_and_implicit_transfer_syntaxes(tmp_path: Path, syntax: str) -> None:
    hu = make_phantom(n=3)
    paths = write_series(tmp_path, hu, transfer_syntax=syntax)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == syntax
    series = DicomSeries.open(paths)
    np.testing.assert_array_equal(series.read([2, 0, 1]), np.maximum(hu[[2, 0, 1]], -1024))


@pytest.mark.skipif(shutil.which("dcmcjpeg") is None, reason="DCMTK dcmcjpeg not installed")
def test_jpeg_lossless_sv1_from_dcmtk(tmp_path: Path) -> None:
    hu = make_phantom(n=3)
    native = write_series(tmp_path / "native", hu, signed=False)
    out = tmp_path / "jpeg"
    out.mkdir()
    for path in native:
        subprocess.run(["dcmcjpeg", "+e1", str(path), str(out / path.name)], check=True)
    series = DicomSeries.open(sorted(out.iterdir()))
    assert series.headers[0].transfer_syntax == "1.2.840.10008.1.2.4.70"
    np.testing.assert_array_equal(series.read(range(3)), np.maximum(hu, -1024))


def test_oblique_gantry_tilt(tmp_path: Path) -> None:
    tilt = np.radians(20)
    iop = (1.0, 0.0, 0.0, 0.0, float(np.cos(tilt)), float(-np.sin(tilt)))
    hu = make_phantom(n=6)
    series = DicomSeries.open(write_series(tmp_path, hu, iop=iop, slice_mm=3.0))
    assert series.geometry.is_axial
    assert np.allclose(np.diff(series.geometry.z_mm), 3.0, atol=1e-3)
    assert np.allclose(series.geometry.normal, (0, np.sin(tilt), np.cos(tilt)), atol=1e-6)
    np.testing.assert_array_equal(series.read(range(6)), np.maximum(hu, -1024))


def test_reversed_slice_order(tmp_path: Path) -> None:
    """Files numbered head to feet: the stack still runs feet to head, by position."""
    hu = make_phantom(n=7)
    paths = write_series(tmp_path, hu, instance_numbers=list(range(7, 0, -1)))
    series = DicomSeries.open(paths)
    signature = aorta_signature(series.read(range(7)))
    assert np.all(np.diff(signature) > 0)
    np.testing.assert_array_equal(series.read(range(7)), np.maximum(hu, -1024))


@pytest.mark.parametrize(
    ("iop", "stored"),
    [
        ((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0), lambda a: a[::-1, ::-1]),  # prone
        ((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0), lambda a: a[:, ::-1]),  # feet first
        ((0.0, 1.0, 0.0, 1.0, 0.0, 0.0), lambda a: a.T),  # transposed
    ],
    ids=["prone", "feet-first", "transposed"],
)
def test_other_patient_positions_give_the_canonical_view(
    tmp_path: Path, iop: tuple[float, ...], stored: Callable[[np.ndarray], np.ndarray]
) -> None:
    hu = make_phantom(n=4, rows=96, cols=112)
    series = DicomSeries.open(write_series(tmp_path, hu, iop=iop, stored=stored))
    assert series.geometry.shape == (96, 112)
    read = series.read(range(4))
    np.testing.assert_array_equal(read, np.maximum(hu, -1024))
    # The patient's left marker is on the image right, the anterior marker at the top.
    assert read[0, 48, int(0.8 * 112)] > 600
    assert read[0, int(0.27 * 96), 56] > 400


def test_missing_optional_tags(tmp_path: Path) -> None:
    hu = make_phantom(n=4)
    paths = write_series(
        tmp_path,
        hu,
        intercept=0.0,
        drop=(
            "InstanceNumber",
            "SliceThickness",
            "RescaleSlope",
            "RescaleIntercept",
            "RescaleType",
            "BitsStored",
            "ImageType",
            "SeriesInstanceUID",
        ),
    )
    series = DicomSeries.open(paths)
    assert series.attributes["SeriesInstanceUID"] is None
    np.testing.assert_array_equal(series.read(range(4)), np.maximum(hu, -1024))


def test_pixel_padding_value_and_range_become_air(tmp_path: Path) -> None:
    hu = make_phantom(n=3, rows=64, cols=64)
    corner = np.zeros((64, 64), bool)
    corner[:8, :8] = True
    # Stored 3000 would read as 1976 HU: padding, when honoured, reads as air.
    paths = write_series(tmp_path / "value", hu, signed=False, padding=(3000, None, corner))
    read = DicomSeries.open(paths).read(range(3))
    assert np.all(read[:, corner] == -1024)
    np.testing.assert_array_equal(read[:, ~corner], np.maximum(hu[:, ~corner], -1024))

    ranged = hu.copy()
    ranged[:, 10:12, 10:12] = 3002 - 1024  # stored 3002: inside [3000, 3005]
    paths = write_series(tmp_path / "range", ranged, signed=False, padding=(3005, 3000, corner))
    read = DicomSeries.open(paths).read(range(3))
    assert np.all(read[:, corner] == -1024)
    assert np.all(read[:, 10:12, 10:12] == -1024)


def test_signed_padding_value_below_air(tmp_path: Path) -> None:
    hu = make_phantom(n=2, rows=64, cols=64)
    corner = np.zeros((64, 64), bool)
    corner[-6:, -6:] = True
    paths = write_series(
        tmp_path, hu, signed=True, intercept=-1024.0, padding=(-2000, None, corner)
    )
    read = DicomSeries.open(paths).read(range(2))
    assert np.all(read[:, corner] == -1024)


def test_bits_above_bits_stored_are_ignored(tmp_path: Path) -> None:
    hu = make_phantom(n=2, rows=64, cols=64)
    paths = write_series(tmp_path, hu, signed=False, bits_stored=12)
    for path in paths:  # an old overlay in bit 15
        ds = pydicom.dcmread(path)
        ds.PixelData = (np.frombuffer(ds.PixelData, np.uint16) | 0x8000).tobytes()
        ds.save_as(path)
    np.testing.assert_array_equal(DicomSeries.open(paths).read(range(2)), np.maximum(hu, -1024))


def test_duplicate_positions_keep_one_slice(tmp_path: Path) -> None:
    hu = make_phantom(n=5)
    paths = write_series(tmp_path / "a", hu)
    again = tmp_path / "again.dcm"
    shutil.copy(paths[0], again)  # the same instance received twice
    other = write_series(
        tmp_path / "b", hu[:1], series_uid=str(pydicom.dcmread(paths[0]).SeriesInstanceUID)
    )
    series = DicomSeries.open([*paths, again, *other])
    assert series.geometry.n_slices == 5
    assert series.duplicates == 2


def test_only_requested_slices_are_decoded(tmp_path: Path) -> None:
    hu = make_phantom(n=6)
    paths = write_series(tmp_path, hu)
    series = DicomSeries.open(paths)
    broken = series.headers[3].path
    ds = pydicom.dcmread(broken)
    ds.PixelData = ds.PixelData[:100]
    ds.save_as(broken)
    np.testing.assert_array_equal(series.read([0, 5]), np.maximum(hu[[0, 5]], -1024))
    with pytest.raises(VolumeError, match=broken.name):
        series.read([3])


def test_inconsistent_series_name_the_file(tmp_path: Path) -> None:
    hu = make_phantom(n=3)
    paths = write_series(tmp_path / "a", hu)
    small = write_series(
        tmp_path / "b",
        hu[:1, :64, :64],
        series_uid=str(pydicom.dcmread(paths[0]).SeriesInstanceUID),
    )
    with pytest.raises(VolumeError, match=rf"{small[0].name}.*64x64 pixels"):
        DicomSeries.open([*paths, *small])

    foreign = write_series(tmp_path / "c", hu[:1])
    with pytest.raises(VolumeError, match=rf"{foreign[0].name}: belongs to series"):
        DicomSeries.open([*paths, *foreign])

    tilted = write_series(
        tmp_path / "d",
        hu[:1],
        iop=(1, 0, 0, 0, 0.9, -0.43589),
        series_uid=str(pydicom.dcmread(paths[0]).SeriesInstanceUID),
    )
    with pytest.raises(VolumeError, match=rf"{tilted[0].name}: ImageOrientationPatient"):
        DicomSeries.open([*paths, *tilted])

    no_position = write_series(tmp_path / "e", hu[:1], drop=("ImagePositionPatient",))
    with pytest.raises(VolumeError, match=rf"{no_position[0].name}: missing ImagePositionPatient"):
        DicomSeries.open(no_position)

    text = tmp_path / "notes.txt"
    text.write_text("not dicom")
    with pytest.raises(VolumeError, match=r"notes\.txt: not a readable DICOM file"):
        DicomSeries.open([*paths, text])

    with pytest.raises(VolumeError, match="no DICOM files"):
        DicomSeries.open([])


def test_multiframe_is_refused(tmp_path: Path) -> None:
    paths = write_series(tmp_path, make_phantom(n=1))
    ds = pydicom.dcmread(paths[0])
    ds.NumberOfFrames = 2
    ds.save_as(paths[0])
    with pytest.raises(VolumeError, match="2 frames"):
        DicomSeries.open(paths)


def test_folders_group_by_series(tmp_path: Path) -> None:
    first = write_series(tmp_path / "one", make_phantom(n=3))
    second = write_series(tmp_path / "two", make_phantom(n=2))
    (tmp_path / "README").write_text("not dicom")
    groups = group_series(p for p in tmp_path.rglob("*") if p.is_file())
    assert sorted(len(g) for g in groups.values()) == [2, 3]
    assert open_source(tmp_path / "one").geometry.n_slices == 3
    assert open_source(first).geometry.n_slices == 3
    with pytest.raises(VolumeError, match="holds 2 series"):
        open_source(tmp_path)
    with pytest.raises(VolumeError, match="belongs to series"):
        open_source([*first, *second])
    with pytest.raises(VolumeError, match="no such file"):
        open_source(tmp_path / "missing")
