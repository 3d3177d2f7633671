"""Reading a received dataset's header without its pixel data."""

from __future__ import annotations

import zlib
from io import BytesIO

import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from ivcontrast.scp.header import HeaderError, instance_header, read_header
from tests.support import dicom_factory
from tests.support.scp_harness import encoded


@pytest.mark.parametrize(
    "ts",
    [
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    ],
)
def test_header_fields_in_every_uncompressed_syntax(ts: str) -> None:
    ds = dicom_factory.ct_image(rows=32, columns=16, contrast_agent="IOPAMIDOL")
    ds.NumberOfFrames = 1
    h = instance_header(read_header(BytesIO(encoded(ds, ts)), ts), ts)
    assert (h.sop_class_uid, h.sop_instance_uid) == (ds.SOPClassUID, ds.SOPInstanceUID)
    assert (h.study_uid, h.series_uid) == (ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert h.transfer_syntax_uid == ts
    assert (h.modality, h.series_number, h.instance_number) == ("CT", 1, 1)
    assert (h.rows, h.columns, h.number_of_frames) == (32, 16, 1)
    assert h.image_type == "ORIGINAL\\PRIMARY\\AXIAL"
    assert h.pixel_spacing == "0.9765625\\0.9765625"
    assert h.slice_thickness == 1.25
    assert h.image_position == "-250.0\\-250.0\\-0.0"
    assert h.image_orientation == "1.0\\0.0\\0.0\\0.0\\1.0\\0.0"
    assert h.contrast_bolus_agent == "IOPAMIDOL"
    assert (h.patient_name, h.patient_id, h.accession_number) == ("Doe^Jane", "PID12345", "ACC0001")
    assert (h.study_date, h.study_time, h.study_description) == ("20240102", "101500", "CT CHEST")
    assert (h.series_description, h.body_part_examined) == ("CT series 1", "CHEST")


def test_pixel_data_is_not_read() -> None:
    ds = dicom_factory.ct_image(rows=8, columns=8)
    raw = encoded(ds, ExplicitVRLittleEndian)
    # Garbage where the pixel data element starts: a reader that went there would fail.
    cut = raw.index(b"\xe0\x7f\x10\x00")
    parsed = read_header(BytesIO(raw[:cut] + b"\xff" * 64), ExplicitVRLittleEndian)
    assert "PixelData" not in parsed
    assert instance_header(parsed, ExplicitVRLittleEndian).rows == 8


def test_character_set_is_honoured() -> None:
    ds = dicom_factory.ct_image(rows=8, columns=8)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    ds.SeriesDescription = "Thorax nativ ü"
    h = instance_header(
        read_header(BytesIO(encoded(ds, ExplicitVRLittleEndian)), ExplicitVRLittleEndian), "x"
    )
    assert h.patient_name == "Müller^Jürgen"
    assert h.series_description == "Thorax nativ ü"


def test_missing_and_malformed_optional_values() -> None:
    ds = dicom_factory.ct_image(rows=8, columns=8)
    del ds.StudyInstanceUID
    ds.InstanceNumber = None
    ds.add_new(0x00200011, "IS", None)
    raw = bytearray(encoded(ds, ExplicitVRLittleEndian))
    # Corrupt SliceThickness (DS) text in place: "1.25" -> "1x25".
    at = raw.index(b"1.25")
    raw[at + 1 : at + 2] = b"x"
    h = instance_header(read_header(BytesIO(bytes(raw)), ExplicitVRLittleEndian), "x")
    assert h.study_uid == ""
    assert h.instance_number is None and h.series_number is None
    assert h.slice_thickness is None
    assert h.series_uid == ds.SeriesInstanceUID


@pytest.mark.parametrize(
    ("raw", "ts"),
    [
        (b"", ExplicitVRLittleEndian),
        (b"\x08\x00\x16\x00UI\xff\x7f1.2", ExplicitVRLittleEndian),  # length beyond the data
        (b"not deflate data", DeflatedExplicitVRLittleEndian),
    ],
)
def test_unparseable_datasets(raw: bytes, ts: str) -> None:
    with pytest.raises(HeaderError):
        read_header(BytesIO(raw), ts)


def test_truncated_deflated_header_still_reads() -> None:
    ds = dicom_factory.ct_image(rows=64, columns=64)
    full = encoded(ds, DeflatedExplicitVRLittleEndian)
    # What matters is inflated from the first bytes of the stream.
    h = instance_header(read_header(BytesIO(full), DeflatedExplicitVRLittleEndian), "x")
    assert h.sop_instance_uid == ds.SOPInstanceUID
    assert zlib.decompressobj(-15).decompress(full)  # a real raw deflate stream


@pytest.mark.parametrize(
    ("encoded_as", "read_as"),
    [
        (ExplicitVRLittleEndian, ImplicitVRLittleEndian),
        (ImplicitVRLittleEndian, ExplicitVRLittleEndian),
    ],
)
def test_a_dataset_in_the_other_vr_encoding_is_refused(encoded_as: str, read_as: str) -> None:
    # pydicom would switch with a warning; the file meta would then say the wrong syntax.
    raw = encoded(dicom_factory.ct_image(rows=8, columns=8), encoded_as)
    with pytest.raises(HeaderError, match="but the presentation context is"):
        read_header(BytesIO(raw), read_as)
