"""The store's tables, as SQLAlchemy 2.0 typed models.

Every schema change here comes with an Alembic migration in ``store/migrations/versions``;
``tests/unit/test_store_schema.py`` fails when the two drift apart.

Times are stored as naive UTC and read back as aware UTC (``UTCDateTime``), so the same
code runs on SQLite (which has no time zones) and PostgreSQL.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

UID = String(64)
AE = String(16)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Naive UTC in the database, aware UTC in Python."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class AssociationState(enum.StrEnum):
    OPEN = "open"
    RELEASED = "released"
    ABORTED = "aborted"
    REJECTED = "rejected"


class SeriesState(enum.StrEnum):
    RECEIVING = "receiving"  # instances arriving; the completion sweep watches it
    QUEUED = "queued"  # complete; a check job is waiting
    SKIPPED = "skipped"  # not eligible; skip_reason says why
    ELIGIBLE = "eligible"  # eligible; a classify job is waiting for a classifier
    CLASSIFIED = "classified"
    FAILED = "failed"  # error says why; the job can be retried


class JobState(enum.StrEnum):
    PENDING = "pending"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"


class Association(Base):
    """One DICOM association, accepted or rejected."""

    __tablename__ = "associations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    listener: Mapped[str] = mapped_column(String(128), comment="host:pid of the listener process")
    calling_ae: Mapped[str] = mapped_column(AE)
    called_ae: Mapped[str] = mapped_column(AE)
    peer_host: Mapped[str] = mapped_column(String(64))
    peer_port: Mapped[int | None]
    state: Mapped[str] = mapped_column(String(16), default=AssociationState.OPEN, index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    instances_received: Mapped[int] = mapped_column(default=0)
    instances_failed: Mapped[int] = mapped_column(default=0)
    bytes_received: Mapped[int] = mapped_column(BigInteger, default=0)


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_uid: Mapped[str] = mapped_column(UID, unique=True)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    patient_name: Mapped[str | None] = mapped_column(String(324))
    accession_number: Mapped[str | None] = mapped_column(String(16), index=True)
    study_date: Mapped[str | None] = mapped_column(String(8))
    study_time: Mapped[str | None] = mapped_column(String(16))
    study_description: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    series: Mapped[list[Series]] = relationship(back_populates="study")


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(primary_key=True)
    series_uid: Mapped[str] = mapped_column(UID, unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    series_number: Mapped[int | None]
    series_description: Mapped[str | None] = mapped_column(String(64))
    body_part_examined: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=SeriesState.RECEIVING, index=True)
    version: Mapped[int] = mapped_column(
        default=1, comment="bumped when a late instance re-opens a completed series"
    )
    skip_reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    instance_count: Mapped[int] = mapped_column(default=0)
    first_received_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    """One received SOP instance: where its file is, and the header fields the worker needs."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    association_id: Mapped[str | None] = mapped_column(ForeignKey("associations.id"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    path: Mapped[str] = mapped_column(String(256), comment="relative to the spool directory")
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    instance_number: Mapped[int | None]
    image_type: Mapped[str | None] = mapped_column(
        String(128), comment="values joined by backslash"
    )
    rows: Mapped[int | None]
    columns: Mapped[int | None]
    number_of_frames: Mapped[int | None]
    pixel_spacing: Mapped[str | None] = mapped_column(String(64))
    slice_thickness: Mapped[float | None] = mapped_column(Float)
    image_position: Mapped[str | None] = mapped_column(String(128))
    image_orientation: Mapped[str | None] = mapped_column(String(192))
    contrast_bolus_agent: Mapped[str | None] = mapped_column(String(64))

    series: Mapped[Series] = relationship(back_populates="instances")


class Job(Base):
    """A durable unit of work, leased by one worker at a time and released with an outcome."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("kind", "series_id", "series_version", "key"),
        Index("ix_jobs_claim", "state", "kind", "available_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    series_version: Mapped[int]
    key: Mapped[str] = mapped_column(
        String(64), default="", comment="distinguishes jobs of one kind for one series version"
    )
    payload: Mapped[dict[str, Any] | None]
    state: Mapped[str] = mapped_column(String(16), default=JobState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Result(Base):
    """A contrast call for one version of a series: one row per (series, version)."""

    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("series_id", "series_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    series_version: Mapped[int]
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(32))
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    probability: Mapped[float] = mapped_column(Float)
    label: Mapped[str] = mapped_column(
        String(16), index=True, comment="contrast, no_contrast or review"
    )
    network_label: Mapped[str | None] = mapped_column(
        String(16), comment="the network's own call: contrast or no_contrast"
    )
    review_reasons: Mapped[list[str] | None] = mapped_column(
        JSON, comment="why the series is in review; empty for a confident call"
    )
    physics_label: Mapped[str | None] = mapped_column(
        String(16), comment="what the blood pool's HU says; null when not measured or not found"
    )
    physics_hu: Mapped[float | None] = mapped_column(Float, comment="the blood pool's HU")
    physics_structure: Mapped[str | None] = mapped_column(String(64))
    physics: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, comment="the physics opinion: structure, HU, slice, position, reason"
    )
    threshold: Mapped[float] = mapped_column(Float)
    aggregation: Mapped[str] = mapped_column(String(32))
    slices_used: Mapped[int]
    slice_probabilities: Mapped[list[Any] | None] = mapped_column(
        JSON, comment="[[z_mm, probability], ...] along the slice normal"
    )
    original_contrast_agent: Mapped[str | None] = mapped_column(String(64))
    tag_status: Mapped[str] = mapped_column(String(16), index=True)
    device: Mapped[str | None] = mapped_column(String(32))
    load_seconds: Mapped[float | None] = mapped_column(Float)
    preprocess_seconds: Mapped[float | None] = mapped_column(Float)
    inference_seconds: Mapped[float | None] = mapped_column(Float)
    physics_seconds: Mapped[float | None] = mapped_column(Float)
    total_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    series: Mapped[Series] = relationship()


class Worker(Base):
    """A worker process's heartbeat, for health checks and for spotting dead workers."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True, comment="host:pid:nonce")
    host: Mapped[str] = mapped_column(String(64))
    pid: Mapped[int]
    kinds: Mapped[str] = mapped_column(String(128), comment="job kinds it takes, comma-separated")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]
    jobs_done: Mapped[int] = mapped_column(default=0)
    jobs_failed: Mapped[int] = mapped_column(default=0)


class Event(Base):
    """Something worth an audit line: a re-sent instance, a re-opened series, a rejection."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    association_id: Mapped[str | None] = mapped_column(String(36))
    series_uid: Mapped[str | None] = mapped_column(UID)
    sop_instance_uid: Mapped[str | None] = mapped_column(UID)
    detail: Mapped[str | None] = mapped_column(Text)


# -- write-back (issue 6) ---------------------------------------------------------------------


class Writeback(Base):
    """What one write-back job sends where, and how its last attempt went.

    One row per ``writeback`` job (one destination, one result version); the job row holds
    the queue state (pending, leased, done, failed) and the attempt count.
    """

    __tablename__ = "writebacks"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), unique=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), index=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    series_version: Mapped[int]
    destination: Mapped[str] = mapped_column(String(64), index=True)
    destination_kind: Mapped[str] = mapped_column(String(16), comment="folder or dicom")
    label: Mapped[str] = mapped_column(
        String(16), comment="the label written: contrast or no_contrast"
    )
    uid_policy: Mapped[str] = mapped_column(String(8), comment="new or keep")
    copies_series_uid: Mapped[str | None] = mapped_column(
        UID, comment="SeriesInstanceUID of the corrected copies; None when copies are off"
    )
    report_series_uid: Mapped[str | None] = mapped_column(UID)
    report_sop_uid: Mapped[str | None] = mapped_column(UID)
    instances_total: Mapped[int] = mapped_column(default=0)
    instances_sent: Mapped[int] = mapped_column(default=0)
    report_sent: Mapped[bool] = mapped_column(default=False)
    outcome: Mapped[str | None] = mapped_column(
        String(16), comment="of the last attempt: sent, failed or superseded"
    )
    last_status: Mapped[str | None] = mapped_column(
        String(8), comment="last DICOM status of a failed C-STORE, e.g. 0xA700"
    )
    failures: Mapped[list[Any] | None] = mapped_column(
        JSON, comment="[[SOPInstanceUID, status or reason], ...] of the last attempt"
    )
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempted_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]


__all__ = [
    "Association",
    "AssociationState",
    "Base",
    "Event",
    "Instance",
    "Job",
    "JobState",
    "Result",
    "Series",
    "SeriesState",
    "Study",
    "Worker",
    "Writeback",
    "utcnow",
]
