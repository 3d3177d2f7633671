"""A store filled with a small node's history, for the web app's tests.

Rows are inserted directly (listener, worker and classifier are other modules' business)
and the classified series get real DICOM files in the spool: simple CT phantoms (body,
spine, aorta; lungs above, liver below) whose aorta and liver enhance when "contrast" is
set, so the thumbnails show what the curve says.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ivcontrast.classifier.package import CARD_FILE, ONNX_FILE, WEIGHTS_FILE, ModelCard
from ivcontrast.classifier.preprocess import PreprocessConfig
from ivcontrast.config import Settings, load_settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import (
    Association,
    Event,
    Instance,
    Job,
    Result,
    Series,
    Study,
    Worker,
    Writeback,
    utcnow,
)

PREFIX = "1.2.826.0.1.3680043.10.1135.7."
PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID12345"
SLICE_MM = 6.25


def uid() -> str:
    return generate_uid(prefix=PREFIX)


def phantom_hu(size: int, z_fraction: float, contrast: bool, seed: int) -> np.ndarray:
    """One axial slice in HU; ``z_fraction`` 0 = lowest (abdomen), 1 = highest (chest)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = size / 2, size / 2 + size * 0.03
    hu = np.full((size, size), -1000.0, dtype=np.float32)

    def ellipse(x0: float, y0: float, rx: float, ry: float) -> np.ndarray:
        return ((xx - x0) / rx) ** 2 + ((yy - y0) / ry) ** 2 <= 1.0

    hu[ellipse(cx, cy, size * 0.42, size * 0.31)] = -100.0  # subcutaneous fat
    hu[ellipse(cx, cy, size * 0.39, size * 0.28)] = 45.0  # muscle and soft tissue
    if z_fraction > 0.45:  # lungs in the chest
        hu[ellipse(cx - size * 0.17, cy - size * 0.02, size * 0.14, size * 0.2)] = -850.0
        hu[ellipse(cx + size * 0.17, cy - size * 0.02, size * 0.14, size * 0.2)] = -850.0
        heart = ellipse(cx + size * 0.03, cy - size * 0.08, size * 0.1, size * 0.09)
        hu[heart] = 180.0 if contrast else 40.0
    else:  # liver in the abdomen
        liver = ellipse(cx - size * 0.14, cy - size * 0.04, size * 0.17, size * 0.15)
        hu[liver] = 110.0 if contrast else 58.0
    hu[ellipse(cx + size * 0.04, cy + size * 0.08, size * 0.04, size * 0.04)] = (
        260.0 if contrast else 42.0
    )  # aorta
    hu[ellipse(cx, cy + size * 0.2, size * 0.06, size * 0.05)] = 700.0  # vertebra
    hu += rng.normal(0.0, 10.0, size=hu.shape).astype(np.float32)
    return hu


def write_slice(
    path: Path,
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    index: int,
    z: float,
    hu: np.ndarray,
    contrast_agent: str | None,
) -> None:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "CT"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.InstanceNumber = index + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [-250.0, -250.0, z]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [500.0 / hu.shape[0], 500.0 / hu.shape[1]]
    ds.SliceThickness = SLICE_MM
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = hu.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    if contrast_agent is not None:
        ds.ContrastBolusAgent = contrast_agent
    ds.PixelData = np.round(hu + 1024).astype(np.int16).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


@dataclass
class Filled:
    """UIDs of the series put in the store, by role."""

    contrast: str = ""  # classified contrast; tag says "NONE" (disagrees)
    plain: str = ""  # classified no contrast; tag "N" (agrees)
    missing_tag: str = ""  # no tag; v1 no contrast, then v2 contrast
    reopened: str = ""  # version 2 receiving, result of version 1
    skipped: str = ""  # localizer
    failed: str = ""  # classify failed with an error
    receiving: str = ""
    eligible: str = ""  # waiting for a classifier
    study_uid: str = ""
    accession: str = "ACC7001"
    association_id: str = ""
    slices: int = 0
    all: list[str] = field(default_factory=list)


def _curve(n: int, contrast: bool, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = i / max(n - 1, 1)
        bump = math.exp(-(((t - 0.55) / 0.3) ** 2))
        p = 0.45 + 0.5 * bump if contrast else 0.06 + 0.3 * bump * (0.5 + 0.5 * math.sin(6 * t))
        out.append(float(np.clip(p + rng.normal(0, 0.04), 0.001, 0.999)))
    return out


def fill_store(
    db: Database, spool: Path, *, slices: int = 24, size: int = 192, now: datetime | None = None
) -> Filled:
    """Studies, series in every state, instances with files, jobs, results, a worker, events."""
    now = now or utcnow()
    f = Filled(slices=slices, study_uid=uid(), association_id=str(uuid.uuid4()))
    with db.write() as session:
        study = Study(
            study_uid=f.study_uid,
            patient_id=PATIENT_ID,
            patient_name=PATIENT_NAME,
            accession_number=f.accession,
            study_date="20240102",
            study_time="101500",
            study_description="CT CHEST ABDOMEN",
        )
        other_study = Study(
            study_uid=uid(),
            patient_id="PID999",
            patient_name="Roe^Richard",
            accession_number="ACC7002",
            study_date="20240103",
            study_description="CT NECK",
        )
        session.add_all([study, other_study])
        assoc = Association(
            id=f.association_id,
            listener="host:1",
            calling_ae="PACS",
            called_ae="IVCONTRAST",
            peer_host="127.0.0.1",
            peer_port=40000,
            state="released",
            started_at=now - timedelta(minutes=30),
            ended_at=now - timedelta(minutes=29),
            instances_received=slices * 4 + 2,
            bytes_received=(slices * 4 + 2) * size * size * 2,
        )
        rejected = Association(
            id="rejected-0001",
            listener="host:1",
            calling_ae="UNKNOWN",
            called_ae="IVCONTRAST",
            peer_host="10.0.0.9",
            state="rejected",
            reason="calling AE 'UNKNOWN' is not allowed",
            started_at=now - timedelta(minutes=20),
            ended_at=now - timedelta(minutes=20),
        )
        session.add_all([assoc, rejected])
        session.flush()

        def add_series(
            number: int,
            description: str,
            state: str,
            *,
            study_row: Study = study,
            minutes_ago: float,
            contrast: bool | None = None,
            agent: str | None = None,
            files: bool = True,
            count: int = slices,
            version: int = 1,
            skip_reason: str | None = None,
            error: str | None = None,
        ) -> Series:
            series_uid = uid()
            received = now - timedelta(minutes=minutes_ago)
            series = Series(
                series_uid=series_uid,
                study_id=study_row.id,
                modality="CT",
                series_number=number,
                series_description=description,
                body_part_examined="CHEST",
                state=state,
                version=version,
                skip_reason=skip_reason,
                error=error,
                instance_count=count,
                first_received_at=received - timedelta(seconds=20),
                last_received_at=received,
                completed_at=None if state == "receiving" else received + timedelta(seconds=60),
            )
            session.add(series)
            session.flush()
            for i in range(count):
                sop = uid()
                z = -SLICE_MM * (count - 1) + SLICE_MM * i
                rel = f"{study_row.study_uid}/{series_uid}/{sop}.dcm"
                size_bytes, digest = 0, hashlib.sha256(sop.encode()).hexdigest()
                if files:
                    path = spool / rel
                    hu = phantom_hu(
                        size, i / max(count - 1, 1), bool(contrast), seed=number * 1000 + i
                    )
                    write_slice(
                        path,
                        study_uid=study_row.study_uid,
                        series_uid=series_uid,
                        sop_uid=sop,
                        index=i,
                        z=z,
                        hu=hu,
                        contrast_agent=agent,
                    )
                    data = path.read_bytes()
                    size_bytes, digest = len(data), hashlib.sha256(data).hexdigest()
                session.add(
                    Instance(
                        sop_instance_uid=sop,
                        series_id=series.id,
                        association_id=assoc.id,
                        sop_class_uid=CTImageStorage,
                        transfer_syntax_uid=ExplicitVRLittleEndian,
                        path=rel,
                        size_bytes=size_bytes,
                        sha256=digest,
                        received_at=received - timedelta(seconds=count - i),
                        instance_number=i + 1,
                        image_type="ORIGINAL\\PRIMARY\\AXIAL",
                        rows=size,
                        columns=size,
                        pixel_spacing="2.6\\2.6",
                        slice_thickness=SLICE_MM,
                        image_position=f"-250\\-250\\{z}",
                        image_orientation="1\\0\\0\\0\\1\\0",
                        contrast_bolus_agent=agent,
                    )
                )
            f.all.append(series_uid)
            return series

        def add_job(
            series: Series,
            kind: str,
            state: str,
            *,
            outcome: str | None = None,
            error: str | None = None,
            attempts: int = 1,
            version: int = 1,
            key: str = "",
        ) -> Job:
            job = Job(
                kind=kind,
                series_id=series.id,
                series_version=version,
                key=key,
                state=state,
                attempts=attempts,
                max_attempts=3,
                outcome=outcome,
                error=error,
                available_at=now - timedelta(minutes=10),
                created_at=now - timedelta(minutes=10),
                started_at=None if state == "pending" else now - timedelta(minutes=9),
                finished_at=now - timedelta(minutes=8) if state in ("done", "failed") else None,
            )
            session.add(job)
            return job

        def add_result(
            series: Series,
            contrast: bool,
            tag_status: str,
            agent: str | None,
            seed: int,
            *,
            version: int = 1,
            total_seconds: float = 1.4,
            minutes_ago: float = 8,
        ) -> Result:
            probs = _curve(slices, contrast, seed)
            zs = [-SLICE_MM * (slices - 1) + SLICE_MM * i for i in range(slices)]
            probability = float(np.mean(probs))
            result = Result(
                series_id=series.id,
                series_version=version,
                model_name="ivcontrast-effnet-b0",
                model_version="1.0.0",
                model_sha256="ab" * 32,
                probability=probability,
                label="contrast" if contrast else "no_contrast",
                threshold=0.5,
                aggregation="mean",
                slices_used=slices,
                slice_probabilities=[[z, p] for z, p in zip(zs, probs, strict=True)],
                original_contrast_agent=agent,
                tag_status=tag_status,
                device="cpu",
                load_seconds=0.2,
                preprocess_seconds=0.3,
                inference_seconds=total_seconds - 0.5,
                total_seconds=total_seconds,
                created_at=now - timedelta(minutes=minutes_ago),
            )
            session.add(result)
            return result

        s = add_series(2, "ART 1.25mm", "classified", minutes_ago=25, contrast=True, agent="NONE")
        add_job(s, "check", "done", outcome="eligible")
        add_job(s, "classify", "done", outcome="classified")
        sent = add_job(s, "writeback", "done", outcome="sent", key="orthanc")
        refused = add_job(
            s,
            "writeback",
            "failed",
            outcome="failed",
            key="pacs",
            attempts=3,
            error="C-STORE to PACS@10.0.0.5:104: association rejected (called AE not recognised)",
        )
        result = add_result(s, True, "disagrees", "NONE", seed=1, total_seconds=1.4)
        session.flush()
        for job, outcome in ((sent, "sent"), (refused, "failed")):
            session.add(
                Writeback(
                    job_id=job.id,
                    result_id=result.id,
                    series_id=s.id,
                    series_version=1,
                    destination=job.key,
                    destination_kind="dicom",
                    label="contrast",
                    uid_policy="new",
                    copies_series_uid=uid(),
                    instances_total=slices,
                    instances_sent=slices if outcome == "sent" else 0,
                    report_sent=outcome == "sent",
                    outcome=outcome,
                    error=job.error,
                    attempted_at=now - timedelta(minutes=8),
                    sent_at=now - timedelta(minutes=8) if outcome == "sent" else None,
                )
            )
        f.contrast = s.series_uid

        s = add_series(3, "NATIVE 5mm", "classified", minutes_ago=24, contrast=False, agent="N")
        add_job(s, "check", "done", outcome="eligible")
        add_job(s, "classify", "done", outcome="classified")
        add_result(s, False, "agrees", "N", seed=2, total_seconds=0.8)
        f.plain = s.series_uid

        # Classified twice: a late image re-opened it and version 2 changed the call.
        s = add_series(
            4, "PV 3mm", "classified", minutes_ago=23, contrast=True, agent=None, version=2
        )
        add_job(s, "classify", "done", outcome="classified")
        add_job(s, "classify", "done", outcome="classified", version=2)
        add_result(s, False, "missing", None, seed=5, total_seconds=0.4, minutes_ago=15)
        add_result(s, True, "missing", None, seed=3, version=2, total_seconds=2.6)
        f.missing_tag = s.series_uid

        s = add_series(
            5, "VEN 2mm", "receiving", minutes_ago=1, contrast=True, agent="OMNIPAQUE", version=2
        )
        add_job(s, "classify", "done", outcome="classified")
        add_result(s, True, "agrees", "OMNIPAQUE", seed=4, total_seconds=4.2)
        f.reopened = s.series_uid

        s = add_series(
            1,
            "Topogram 0.6",
            "skipped",
            minutes_ago=26,
            files=False,
            count=1,
            skip_reason="localizer/scout",
        )
        add_job(s, "check", "done", outcome="skipped")
        f.skipped = s.series_uid

        s = add_series(
            6,
            "BONE 1mm",
            "failed",
            minutes_ago=22,
            files=False,
            count=3,
            error="classify: PermanentJobError: slice 2: cannot decode pixel data",
        )
        add_job(
            s,
            "classify",
            "failed",
            outcome="failed",
            attempts=3,
            error="PermanentJobError: slice 2: cannot decode pixel data",
        )
        f.failed = s.series_uid

        s = add_series(7, "ART 0.6", "receiving", minutes_ago=0.2, files=False, count=5)
        f.receiving = s.series_uid

        s = add_series(
            2, "NECK CE", "eligible", study_row=other_study, minutes_ago=5, files=False, count=12
        )
        add_job(s, "check", "done", outcome="eligible")
        add_job(s, "classify", "pending", attempts=0)
        f.eligible = s.series_uid

        session.add(
            Worker(
                id="host:42:abcd",
                host="host",
                pid=42,
                kinds="check,classify",
                started_at=now - timedelta(hours=1),
                heartbeat_at=now - timedelta(seconds=3),
                jobs_done=7,
                jobs_failed=1,
            )
        )
        session.add(
            Worker(
                id="host:41:dead",
                host="host",
                pid=41,
                kinds="check",
                started_at=now - timedelta(hours=3),
                heartbeat_at=now - timedelta(hours=2),
                stopped_at=now - timedelta(hours=2),
            )
        )
        session.add_all(
            [
                Event(
                    at=now - timedelta(minutes=2),
                    kind="series_reopened",
                    series_uid=f.reopened,
                    detail="late instance after completion; version 2",
                ),
                Event(
                    at=now - timedelta(minutes=20),
                    kind="association_rejected",
                    association_id="rejected-0001",
                    detail="calling AE 'UNKNOWN' is not allowed",
                ),
            ]
        )
    return f


def web_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a test node in ``data_dir``; ``overrides`` by dotted name."""
    return load_settings(env={}, overrides={"data_dir": str(data_dir), **overrides})


def model_package(folder: Path) -> Path:
    """A model package as /health sees it: a valid card and its two files (not a network)."""
    folder.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name in (ONNX_FILE, WEIGHTS_FILE):
        (folder / name).write_bytes(b"placeholder " + name.encode())
        digests[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    card = ModelCard(
        name="ivcontrast-effnet-b0",
        version="1.0.0",
        architecture="efficientnet-b0",
        preprocess=PreprocessConfig(),
        regions=("chest",),
        files=digests,
    )
    (folder / CARD_FILE).write_text(card.to_json(), encoding="utf-8")
    return folder
