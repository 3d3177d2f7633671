"""Bare DICOM datasets and files for protocol tests and benchmarks.

Not a phantom generator (that is ``ivcontrast.synth``): these datasets carry just the
attributes a DICOM listener and the series index look at, with cheap pixel data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

PREFIX = "1.2.826.0.1.3680043.10.1135."  # pydicom's prefix space, plus a project number


def new_uid() -> str:
    return generate_uid(prefix=PREFIX)


def _image(
    sop_class: str,
    modality: str,
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str | None,
    index: int,
    rows: int,
    columns: int,
    series_number: int,
    patient_name: str,
    patient_id: str,
    pixels: np.ndarray | None,
    frame_uid: str | None = None,
) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid or new_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid or new_uid()
    ds.Modality = modality
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.AccessionNumber = "ACC0001"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.StudyDescription = "CT CHEST"
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.SeriesDescription = f"{modality} series {series_number}"
    ds.BodyPartExamined = "CHEST"
    ds.InstanceNumber = index + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [-250.0, -250.0, -1.25 * index]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.9765625, 0.9765625]
    ds.SliceThickness = 1.25
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    if pixels is None:
        rng = np.random.default_rng(index)
        pixels = rng.integers(0, 2000, size=(rows, columns), dtype=np.int16)
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.int16).tobytes()
    _set_meta(ds, ExplicitVRLittleEndian)
    return ds


def _set_meta(ds: Dataset, transfer_syntax: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(PREFIX + "1")
    ds.file_meta = meta


def ct_series(
    count: int,
    *,
    rows: int = 64,
    columns: int = 64,
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 1,
    contrast_agent: str | None = None,
    patient_name: str = "Doe^Jane",
    patient_id: str = "PID12345",
) -> list[Dataset]:
    """``count`` axial CT slices of one series (random int16 pixels)."""
    study_uid = study_uid or new_uid()
    series_uid = series_uid or new_uid()
    frame_uid = new_uid()
    out = []
    for i in range(count):
        ds = _image(
            CTImageStorage,
            "CT",
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=None,
            index=i,
            rows=rows,
            columns=columns,
            series_number=series_number,
            patient_name=patient_name,
            patient_id=patient_id,
            pixels=None,
            frame_uid=frame_uid,
        )
        if contrast_agent is not None:
            ds.ContrastBolusAgent = contrast_agent
        out.append(ds)
    return out


def ct_image(**kwargs: object) -> Dataset:
    """One CT slice; keyword arguments as for :func:`ct_series`."""
    return ct_series(1, **kwargs)[0]  # type: ignore[arg-type]


def mr_image(study_uid: str | None = None, rows: int = 32, columns: int = 32) -> Dataset:
    uid = study_uid or new_uid()
    return _image(
        MRImageStorage,
        "MR",
        study_uid=uid,
        series_uid=new_uid(),
        sop_uid=None,
        index=0,
        rows=rows,
        columns=columns,
        series_number=5,
        patient_name="Doe^Jane",
        patient_id="PID12345",
        pixels=None,
    )


def secondary_capture(study_uid: str | None = None) -> Dataset:
    ds = _image(
        SecondaryCaptureImageStorage,
        "OT",
        study_uid=study_uid or new_uid(),
        series_uid=new_uid(),
        sop_uid=None,
        index=0,
        rows=16,
        columns=16,
        series_number=99,
        patient_name="Doe^Jane",
        patient_id="PID12345",
        pixels=None,
    )
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ConversionType = "WSD"
    return ds


def encapsulated(ds: Dataset, transfer_syntax: str) -> Dataset:
    """A copy of ``ds`` whose pixel data is encapsulated under ``transfer_syntax``.

    RLE Lossless is really encoded; for other compressed syntaxes the fragment holds the
    raw bytes behind a JPEG/J2K-looking marker. A listener must store such data as it is
    received without decoding it, so the bytes only need the encapsulated structure.
    """
    out = ds.copy()
    out.file_meta = FileMetaDataset(ds.file_meta)
    if transfer_syntax == RLELossless:
        out.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
        return out
    frame = b"\xff\xd8" + bytes(ds.PixelData[:4096]) + b"\xff\xd9"
    out.PixelData = encapsulate([frame])
    out["PixelData"].VR = "OB"
    out["PixelData"].is_undefined_length = True
    out.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    return out


def write_files(datasets: Sequence[Dataset], folder: Path) -> list[Path]:
    """Write each dataset as a DICOM file named after its SOP Instance UID."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def malformed_file(folder: Path, sop_class: str = CTImageStorage) -> Path:
    """A Part 10 file whose dataset ends in the middle of an element.

    The file meta is valid (so a sender can read it and send it), the dataset bytes are
    not: a listener that parses the header must answer a failure status.
    """
    ds = ct_image(rows=8, columns=8)
    ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    path = folder / "malformed.dcm"
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    raw = path.read_bytes()
    # Keep the meta and the first few elements, then a tag that claims more bytes than follow.
    meta_end = _meta_end(raw)
    body = raw[meta_end : meta_end + 40] + b"\x08\x00\x20\x00DA\x40\x00" + b"2024"
    path.write_bytes(raw[:meta_end] + body)
    return path


def _meta_end(raw: bytes) -> int:
    # Group length (0002,0000) UL follows the 132-byte preamble+prefix: 12 bytes header.
    group_len = int.from_bytes(raw[140:144], "little")
    return 144 + group_len
