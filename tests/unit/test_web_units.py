"""Pure parts of the web app: curve geometry, slice choice, windowing, exposition, auth helpers."""

from __future__ import annotations

import io
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ivcontrast.web import plot
from ivcontrast.web.auth import safe_next, session_value, token_matches
from ivcontrast.web.metrics import Exposition
from ivcontrast.web.pages.render import LABEL_TEXT
from ivcontrast.web.schemas import physics_out, slice_points
from ivcontrast.web.thumbnails import (
    MARK_COLOUR,
    Geometry,
    Slice,
    ThumbnailError,
    physics_slice,
    render_marked_png,
    render_png,
    representative,
    resolve,
    sorted_slices,
)

# -- the curve ------------------------------------------------------------------------------


def test_curve_maps_z_and_probability_into_the_plot_area() -> None:
    points = [(-100.0, 0.0), (0.0, 1.0), (-50.0, 0.5)]
    c = plot.curve(points, threshold=0.5, probability=0.5, marker_z=[-100.0, 0.0])
    assert c is not None
    # Sorted by z: the lowest z on the left edge at p = 0, the highest on the right at p = 1.
    assert c.xs == sorted(c.xs)
    assert c.xs[0] == pytest.approx(c.left) and c.xs[-1] == pytest.approx(c.right)
    assert c.ys[0] == pytest.approx(c.bottom) and c.ys[-1] == pytest.approx(c.top)
    assert c.ys[1] == pytest.approx((c.top + c.bottom) / 2)
    assert c.threshold_y == pytest.approx((c.top + c.bottom) / 2)
    assert c.line.startswith("M") and c.line.count("L") == 2
    assert c.area.endswith("Z")
    assert [m.number for m in c.markers] == [1, 2]
    assert c.markers[0].x == pytest.approx(c.left) and c.markers[1].x == pytest.approx(c.right)
    assert all(c.left - 0.01 <= t.at <= c.right + 0.01 for t in c.x_ticks)
    assert [t.label for t in c.x_ticks][:2] == ["-100", "-80"]


def test_curve_without_points_is_none_and_one_point_gets_a_range() -> None:
    assert plot.curve([], 0.5, 0.5) is None
    c = plot.curve([(12.0, 0.7)], 0.5, 0.7)
    assert c is not None and c.xs[0] > c.left and c.xs[0] < c.right


def test_value_labels_keep_apart_when_the_lines_nearly_meet() -> None:
    c = plot.curve([(0.0, 0.5), (10.0, 0.52)], threshold=0.5, probability=0.51)
    assert c is not None
    assert abs(c.threshold_label_y - c.probability_label_y) >= plot.LABEL_GAP - 1e-6
    # The higher probability keeps the higher label (smaller y).
    assert c.probability_label_y < c.threshold_label_y


@pytest.mark.parametrize(
    ("span", "step"), [(100.0, 20.0), (375.0, 50.0), (7.0, 1.0), (1200.0, 200.0)]
)
def test_nice_step(span: float, step: float) -> None:
    assert plot.nice_step(span) == step


# -- slice choice ---------------------------------------------------------------------------


def _inst(i: int, z: float | None, number: int, frames: int | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        sop_instance_uid=f"1.2.{i}",
        path=f"a/{i}.dcm",
        sha256=f"{i:064d}",
        instance_number=number,
        rows=64,
        columns=64,
        number_of_frames=frames,
        image_position=None if z is None else f"0\\0\\{z}",
        image_orientation="1\\0\\0\\0\\1\\0",
    )


def test_slices_sort_by_position_not_instance_number() -> None:
    # Instance numbers run against z, and one slice has no position at all.
    instances = [_inst(i, z, n) for i, (z, n) in enumerate([(10, 1), (-5, 3), (2.5, 2)])]
    instances.append(_inst(9, None, 0))
    instances.append(_inst(8, 1.0, 5, frames=4))  # multi-frame: not a thumbnail candidate
    geometry = sorted_slices(instances)  # type: ignore[arg-type]
    assert [s.z_mm for s in geometry.slices] == [-5.0, 2.5, 10.0, None]
    assert geometry.normal == (0.0, 0.0, 1.0)


def test_representative_slices_come_from_the_middle_of_equal_stretches() -> None:
    slices = list(range(100))
    picked = representative(slices, 4)  # type: ignore[arg-type]
    assert picked == [12, 37, 62, 87]
    assert representative(slices[:3], 8) == [0, 1, 2]  # type: ignore[arg-type]


# -- windowing ------------------------------------------------------------------------------


def _ct_file(path: Path, hu: np.ndarray, padding: int | None = None) -> Path:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = hu.shape
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [1.0, 1.0]
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0  # unsigned stored values, as many scanners write
    ds.RescaleSlope = 2
    ds.RescaleIntercept = -2048
    stored = ((hu + 2048) / 2).astype(np.uint16)
    if padding is not None:
        ds.PixelPaddingValue = padding
        stored[0, :] = padding
    ds.PixelData = stored.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_thumbnail_applies_rescale_and_the_soft_tissue_window(tmp_path: Path) -> None:
    hu = np.zeros((64, 64), dtype=np.float32)
    hu[:, 0:16] = -1000  # air: below the window
    hu[:, 16:32] = 40  # window centre
    hu[:, 32:48] = 240  # top of the window
    hu[:, 48:64] = 1000  # bone: above
    path = _ct_file(tmp_path / "a.dcm", hu, padding=0)
    img = np.asarray(Image.open(io.BytesIO(render_png(path, 64))))
    assert img.shape == (64, 64)
    row = img[32]
    assert row[8] == 0
    assert abs(int(row[24]) - 127) <= 2
    assert row[40] == 255 and row[56] == 255
    assert (img[0] == 0).all()  # padding shown as air, even where bone would be


def test_thumbnail_is_downsampled_and_bad_files_say_why(tmp_path: Path) -> None:
    path = _ct_file(tmp_path / "b.dcm", np.full((200, 100), 40, dtype=np.float32))
    img = Image.open(io.BytesIO(render_png(path, 50)))
    assert img.size == (25, 50)
    (tmp_path / "bad.dcm").write_bytes(b"not dicom at all")
    with pytest.raises(ThumbnailError, match=r"bad\.dcm"):
        render_png(tmp_path / "bad.dcm", 64)
    with pytest.raises(ThumbnailError, match="not found"):
        render_png(tmp_path / "gone.dcm", 64)


def test_spool_paths_cannot_escape(tmp_path: Path) -> None:
    assert resolve(tmp_path, "a/b.dcm") == (tmp_path / "a" / "b.dcm").resolve()
    with pytest.raises(ThumbnailError, match="outside the spool"):
        resolve(tmp_path, "../etc/passwd")


# -- exposition, auth, slice points --------------------------------------------------------

SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_]+="([^"\\]|\\.)*",?)*\})? \S+$')


def test_exposition_escapes_labels_and_writes_histograms() -> None:
    out = Exposition()
    out.family("x_total", "counter", "Help.", [({"kind": 'a"b\\c\nd'}, 3), ({}, 2.5)])
    out.histogram("lat_seconds", "Latency.", [(0.5, 1), (1.0, 3)], total=2.25, count=4)
    lines = out.text().splitlines()
    assert lines[:2] == ["# HELP x_total Help.", "# TYPE x_total counter"]
    assert lines[2] == 'x_total{kind="a\\"b\\\\c\\nd"} 3'
    assert 'lat_seconds_bucket{le="+Inf"} 4' in lines
    assert "lat_seconds_sum 2.25" in lines and "lat_seconds_count 4" in lines
    assert all(SAMPLE.match(line) for line in lines if not line.startswith("#"))


def test_session_cookie_and_token_comparison() -> None:
    assert session_value("a") == session_value("a") != session_value("b")
    assert len(session_value("sekret")) == 64 and "sekret" not in session_value("sekret")
    assert token_matches("sekret", "sekret") and not token_matches("sekret ", "sekret")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/series?state=failed", "/series?state=failed"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil", "/"),
        (None, "/"),
    ],
)
def test_sign_in_only_returns_to_local_pages(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_slice_points_are_sorted_and_malformed_ones_dropped() -> None:
    raw = [[5, 0.2], [-5, 0.9], ["x", 0.1], [1.0], [2.0, float("nan")], [0, 1]]
    points = slice_points(raw)
    assert [(p.z_mm, p.probability) for p in points] == [(-5, 0.9), (0, 1), (5, 0.2)]
    assert slice_points(None) == []


# -- the physics opinion's picture ------------------------------------------------------------


def _geometry(zs: list[float | None], normal: tuple[float, float, float] | None) -> Geometry:
    slices = [Slice(f"1.2.{i}", f"a/{i}.dcm", f"{i:064d}", i + 1, z) for i, z in enumerate(zs)]
    return Geometry(slices, normal)


def test_the_physics_slice_is_found_by_its_position_along_the_classifiers_normal() -> None:
    feet_first = _geometry([-10.0, -5.0, 0.0, 5.0], (0.0, 0.0, 1.0))
    assert physics_slice(feet_first, -5.0, 1).sop_instance_uid == "1.2.1"  # type: ignore[union-attr]
    # Index 3 in the classifier's order, but the position decides (headers may hold more).
    assert physics_slice(feet_first, 0.004, 3).sop_instance_uid == "1.2.2"  # type: ignore[union-attr]
    assert physics_slice(feet_first, 2.5, 1) is None  # between slices: not this series' slice
    # A normal pointing to the feet: the classifier flips it, so its z is the negative.
    flipped = _geometry([-5.0, 0.0, 5.0], (0.0, 0.0, -1.0))
    assert physics_slice(flipped, 5.0, 0).sop_instance_uid == "1.2.0"  # type: ignore[union-attr]
    # No positions in the headers: the index in the sorted series.
    unplaced = _geometry([None, None], None)
    assert physics_slice(unplaced, 12.0, 1).sop_instance_uid == "1.2.1"  # type: ignore[union-attr]
    assert physics_slice(unplaced, None, 2) is None


def test_the_marked_picture_circles_the_blood_pool(tmp_path: Path) -> None:
    hu = np.full((64, 64), 40.0, dtype=np.float32)
    path = _ct_file(tmp_path / "a.dcm", hu)  # 1 mm pixels
    plain = np.asarray(Image.open(io.BytesIO(render_png(path, 64))))
    img = np.asarray(Image.open(io.BytesIO(render_marked_png(path, 64, 20.0, 40.0, 8.0))))
    assert img.shape == (64, 64, 3)
    ring = np.all(img == MARK_COLOUR, axis=2)
    ys, xs = np.nonzero(ring)
    distance = np.hypot(ys - 20.0, xs - 40.0)
    assert len(ys) > 30 and abs(np.median(distance) - 8.0) < 1.0
    assert (img[20, 40] == plain[20, 40]).all()  # the vessel itself is not covered
    # Halved: the circle shrinks with the picture.
    small = np.asarray(Image.open(io.BytesIO(render_marked_png(path, 32, 20.0, 40.0, 8.0))))
    ys, xs = np.nonzero(np.all(small == MARK_COLOUR, axis=2))
    assert abs(np.median(np.hypot(ys + 0.5 - 10.25, xs + 0.5 - 20.25)) - 4.0) < 1.0


def test_the_stored_physics_opinion_is_read_leniently() -> None:
    good = physics_out({"found": True, "hu": 41.5, "row": 3.0, "col": 4.0, "reason": "x"})
    assert good is not None and good.hu == 41.5 and good.structure is None
    nan = physics_out({"found": True, "hu": float("nan"), "extra": 1, "reason": "x"})
    assert nan is not None and nan.hu is None  # JSON has no NaN
    assert physics_out(None) is None and physics_out([1, 2]) is None
    assert physics_out({"found": "perhaps"}) is None
    assert LABEL_TEXT["review"] == "Review"
