"""The store's value types: what the listener hands the write path, and what it gets back.

Plain frozen dataclasses and one enum, with no database behind them, so that a module that
only needs a type (``scp.header`` builds an ``InstanceHeader``; eligibility reads one) does
not import the write path in ``store.ingest``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class AssociationInfo:
    """Who asked for an association, and which listener process took it."""

    id: str
    listener: str
    calling_ae: str
    called_ae: str
    peer_host: str
    peer_port: int | None


@dataclass(frozen=True)
class InstanceHeader:
    """The header fields of a received instance that the store keeps.

    Multi-valued attributes are joined by backslash, as DICOM encodes them.
    """

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str
    modality: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    body_part_examined: str | None = None
    patient_id: str | None = None
    patient_name: str | None = None
    accession_number: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    study_description: str | None = None
    instance_number: int | None = None
    image_type: str | None = None
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int | None = None
    pixel_spacing: str | None = None
    slice_thickness: float | None = None
    image_position: str | None = None
    image_orientation: str | None = None
    contrast_bolus_agent: str | None = None


@dataclass(frozen=True)
class StoredFile:
    """A spool file: its path relative to the spool, size, and the received bytes' sha256."""

    path: str
    size: int
    sha256: str


class Outcome(enum.StrEnum):
    NEW = "new"  # first time this SOP Instance UID was received
    IDENTICAL = "identical"  # re-sent with the same bytes: nothing changed
    REPLACED = "replaced"  # re-sent with different bytes: the newest is kept


@dataclass(frozen=True)
class RecordResult:
    outcome: Outcome
    series_id: int
    series_reopened: bool
    series_version: int
    stale_path: str | None = None
    """A file the instance no longer lives at (it moved to another series): delete it."""
