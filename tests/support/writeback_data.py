"""Small, standard-conformant CT series in a spool, with their store rows, for write-back tests,
and the few steps every write-back test takes (a node's settings, the classify step's
enqueue, a worker run, dciodvfy).

The instances carry every Type 1 and Type 2 attribute of the CT Image IOD, so that
``dciodvfy`` reports no errors on them and any error on a corrected copy is the copy's own.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid
from sqlalchemy import select

from ivcontrast.config import Settings, load_settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import Instance, Job, Result, Series, SeriesState, Study, Writeback
from ivcontrast.worker.service import Worker, build_handlers
from ivcontrast.writeback import enqueue_writeback

PREFIX = "1.2.826.0.1.3680043.10.1135.6."
DCIODVFY = shutil.which("dciodvfy")


def ct_slice(
    study_uid: str,
    series_uid: str,
    frame_uid: str,
    index: int,
    *,
    size: int = 16,
    contrast_agent: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid(prefix=PREFIX)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.Modality = "CT"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-WB-1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientPosition = "HFS"
    ds.ReferringPhysicianName = ""
    ds.AccessionNumber = "ACC-WB-1"
    ds.StudyID = "1"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.StudyDescription = "CT CHEST"
    ds.SeriesNumber = 3
    ds.SeriesDescription = "Chest 1.25mm"
    ds.Manufacturer = "SYNTH"
    ds.BodyPartExamined = "CHEST"
    ds.InstanceNumber = index + 1
    ds.AcquisitionNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [-100.0, -100.0, -1.25 * index]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.75, 0.75]
    ds.SliceThickness = 1.25
    ds.KVP = 120
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    if contrast_agent is not None:
        ds.ContrastBolusAgent = contrast_agent
    rng = np.random.default_rng(index)
    ds.PixelData = rng.integers(0, 2000, size=(size, size), dtype=np.int16).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta = meta
    return ds


@dataclass
class SpooledSeries:
    series_id: int
    study_uid: str
    series_uid: str
    files: list[Path]  # absolute paths in the spool, in instance order

    def digests(self) -> dict[Path, str]:
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in self.files}


def spool_series(
    db: Database,
    spool: Path,
    count: int = 4,
    *,
    contrast_agent: str | None = None,
    size: int = 16,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> SpooledSeries:
    """Write a CT series into ``spool`` as the listener does and record it in the store."""
    study_uid, series_uid = generate_uid(prefix=PREFIX), generate_uid(prefix=PREFIX)
    frame_uid = generate_uid(prefix=PREFIX)
    folder = spool / study_uid / series_uid
    folder.mkdir(parents=True)
    files = []
    with db.write() as session:
        study = Study(study_uid=study_uid, patient_id="PID-WB-1", accession_number="ACC-WB-1")
        series = Series(
            series_uid=series_uid,
            study=study,
            modality="CT",
            series_number=3,
            series_description="Chest 1.25mm",
            state=SeriesState.CLASSIFIED,
            instance_count=count,
        )
        session.add_all([study, series])
        for i in range(count):
            ds = ct_slice(
                study_uid,
                series_uid,
                frame_uid,
                i,
                size=size,
                contrast_agent=contrast_agent,
                transfer_syntax=transfer_syntax,
            )
            path = folder / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
            session.add(
                Instance(
                    sop_instance_uid=ds.SOPInstanceUID,
                    series=series,
                    sop_class_uid=ds.SOPClassUID,
                    transfer_syntax_uid=transfer_syntax,
                    path=str(path.relative_to(spool)),
                    size_bytes=path.stat().st_size,
                    sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                    instance_number=i + 1,
                    contrast_bolus_agent=contrast_agent,
                )
            )
        session.flush()
        series_id = series.id
    return SpooledSeries(series_id, study_uid, series_uid, files)


def make_result(
    series_id: int,
    version: int = 1,
    *,
    label: str = "contrast",
    probability: float = 0.97,
    original: str | None = None,
    tag_status: str = "missing",
) -> Result:
    return Result(
        series_id=series_id,
        series_version=version,
        model_name="ivcontrast-effb0",
        model_version="1.2.0",
        probability=probability,
        label=label,
        threshold=0.5,
        aggregation="mean",
        slices_used=4,
        original_contrast_agent=original,
        tag_status=tag_status,
    )


def node(tmp_path: Path, destinations: list[dict[str, Any]], **writeback: Any) -> Settings:
    """Settings of a node in ``tmp_path/data`` with write-back on (unless overridden)."""
    overrides = {"data_dir": str(tmp_path / "data"), "writeback.destinations": destinations}
    overrides.update({f"writeback.{k}": v for k, v in {"enabled": True, **writeback}.items()})
    return load_settings(env={}, overrides=overrides)


def node_store(tmp_path: Path) -> Database:
    """The store of the node that :func:`node` sets up in ``tmp_path/data``, migrated."""
    db = Database(f"sqlite:///{tmp_path / 'data' / 'ivcontrast.db'}")
    db.upgrade()
    return db


def record_result(db: Database, settings: Settings, spooled: SpooledSeries, **kwargs: Any) -> int:
    """What the classify step does: add a result and enqueue write-back in one transaction."""
    with db.write() as session:
        result = make_result(spooled.series_id, **kwargs)
        session.add(result)
        return enqueue_writeback(session, settings.writeback, result)


def run_worker(settings: Settings, db: Database) -> int:
    return Worker(settings, db, build_handlers(settings, db), sweep=False).run_until_idle()


def jobs(db: Database) -> list[Job]:
    with db.session() as session:
        return list(session.scalars(select(Job).order_by(Job.id)))


def writebacks(db: Database) -> list[Writeback]:
    with db.session() as session:
        return list(session.scalars(select(Writeback).order_by(Writeback.id)))


def dciodvfy_errors(path: Path) -> list[str]:
    assert DCIODVFY is not None
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
