"""The listener's writes to the store: associations, and each received instance.

Every function here is one short write transaction (``Database.write``'s, at the Core
level) of a few prebuilt statements, so that several listener processes can share one
SQLite file (or PostgreSQL) without holding the write lock for long: recording an
instance takes about 0.25 ms on SQLite here (``bench/bench_scp.py`` measures it). Rows that several processes may insert at once
(a study, a series, an instance) are first looked up; an ``IntegrityError`` from a
concurrent insert is retried once in a new transaction, which then finds the row.

The series row is read ``FOR UPDATE`` before it is changed: on PostgreSQL this orders an
arriving instance against the completion sweep, so that an instance that arrives after the
sweep queued its series always re-opens the series (on SQLite, ``BEGIN IMMEDIATE`` already
serialises writers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from ivcontrast.store.db import Database
from ivcontrast.store.models import (
    Association,
    AssociationState,
    Event,
    Instance,
    Series,
    SeriesState,
    Study,
    utcnow,
)
from ivcontrast.store.values import (
    AssociationInfo,
    InstanceHeader,
    Outcome,
    RecordResult,
    StoredFile,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_studies = cast(Table, Study.__table__)
_series = cast(Table, Series.__table__)
_instances = cast(Table, Instance.__table__)
_associations = cast(Table, Association.__table__)
_events = cast(Table, Event.__table__)


# Event kinds written here.
EVENT_IDENTICAL = "instance_resent"
EVENT_REPLACED = "instance_replaced"
EVENT_REOPENED = "series_reopened"
EVENT_RECONCILED = "instance_reconciled"


_write_engines: WeakKeyDictionary[Database, Engine] = WeakKeyDictionary()


@contextmanager
def _write(db: Database) -> Iterator[Connection]:
    """``Database.write()`` at the Core level: the same write transaction (``BEGIN
    IMMEDIATE`` on SQLite), without an ORM session, whose set-up costs more than these
    few statements."""
    engine = _write_engines.get(db)
    if engine is None:
        engine = _write_engines[db] = db.engine.execution_options(write=True)
    with engine.begin() as conn:
        yield conn


def _retry_once(db: Database, work: Callable[[Connection], T]) -> T:
    """Run ``work`` in a write transaction; once more if a concurrent insert collided."""
    try:
        with _write(db) as conn:
            return work(conn)
    except IntegrityError as exc:
        log.debug("concurrent insert, retrying once: %s", exc.orig)
    with _write(db) as conn:
        return work(conn)


# --- associations -------------------------------------------------------------------------


def open_association(db: Database, info: AssociationInfo, now: datetime | None = None) -> None:
    """Record an accepted association as ``open``."""
    with _write(db) as conn:
        conn.execute(
            insert(_associations).values(
                **_association_values(info), state=AssociationState.OPEN, started_at=now or utcnow()
            )
        )


def reject_association(
    db: Database, info: AssociationInfo, reason: str, now: datetime | None = None
) -> None:
    """Record a rejected association with the reason it was rejected."""
    now = now or utcnow()
    with _write(db) as conn:
        conn.execute(
            insert(_associations).values(
                **_association_values(info),
                state=AssociationState.REJECTED,
                reason=reason,
                started_at=now,
                ended_at=now,
            )
        )


def close_association(
    db: Database,
    association_id: str,
    state: AssociationState,
    reason: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Mark an open association released or aborted; False if it was not open."""
    with _write(db) as conn:
        result = conn.execute(
            update(_associations)
            .where(
                _associations.c.id == association_id,
                _associations.c.state == AssociationState.OPEN,
            )
            .values(state=state, reason=reason, ended_at=now or utcnow())
        )
        return bool(result.rowcount)


def count_failure(db: Database, association_id: str) -> None:
    """Count an instance the association sent that we answered with a failure status."""
    with _write(db) as conn:
        conn.execute(
            update(_associations)
            .where(_associations.c.id == association_id)
            .values(instances_failed=_associations.c.instances_failed + 1)
        )


def abort_orphaned_associations(
    db: Database,
    host: str,
    is_alive: Callable[[int], bool],
    reason: str = "listener process ended without closing the association",
    now: datetime | None = None,
) -> list[str]:
    """Mark as aborted the open associations of this host's listener processes that are gone.

    ``listener`` is ``host:pid``; ``is_alive(pid)`` says whether that process still runs.
    Returns the ids of the associations marked.
    """
    now = now or utcnow()
    with _write(db) as conn:
        rows = conn.execute(
            select(_associations.c.id, _associations.c.listener).where(
                _associations.c.state == AssociationState.OPEN,
                _associations.c.listener.like(_like_prefix(host) + ":%", escape="\\"),
            )
        ).all()
        dead = [row.id for row in rows if not is_alive(_pid_of(row.listener))]
        if dead:
            conn.execute(
                update(_associations)
                .where(
                    _associations.c.id.in_(dead),
                    _associations.c.state == AssociationState.OPEN,
                )
                .values(state=AssociationState.ABORTED, reason=reason, ended_at=now)
            )
    return dead


def abort_listener_associations(
    db: Database, listener: str, reason: str, now: datetime | None = None
) -> int:
    """Mark every open association of one listener process aborted; returns how many."""
    with _write(db) as conn:
        result = conn.execute(
            update(_associations)
            .where(
                _associations.c.listener == listener,
                _associations.c.state == AssociationState.OPEN,
            )
            .values(state=AssociationState.ABORTED, reason=reason, ended_at=now or utcnow())
        )
        return int(result.rowcount)


def _association_values(info: AssociationInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "listener": info.listener[:128],
        "calling_ae": info.calling_ae[:16],
        "called_ae": info.called_ae[:16],
        "peer_host": info.peer_host[:64],
        "peer_port": info.peer_port,
    }


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _pid_of(listener: str) -> int:
    try:
        return int(listener.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return -1


# --- instances ----------------------------------------------------------------------------


def record_instance(
    db: Database,
    header: InstanceHeader,
    stored: StoredFile,
    association_id: str | None,
    now: datetime | None = None,
    event_kind_new: str | None = None,
) -> RecordResult:
    """Index a spooled instance: study, series and instance rows, counters and events.

    - New SOP Instance UID: inserted; the series' count and last-received time move on; a
      series that was no longer receiving (complete, classified, skipped...) is re-opened.
    - Same UID, same sha256: nothing changes but an ``instance_resent`` event.
    - Same UID, other bytes: the row is updated to the new file (the newest is kept), an
      ``instance_replaced`` event is written and the series is re-opened if it had completed.

    ``event_kind_new`` writes an event for a new instance too (the reconcile step uses it).
    """
    now = now or utcnow()
    return _retry_once(
        db, lambda conn: _record(conn, header, stored, association_id, now, event_kind_new)
    )


# Statements are built once: building Core statements costs more than running them on
# SQLite, and these run once per received instance.
_SELECT_STUDY = select(_studies.c.id).where(_studies.c.study_uid == bindparam("b_uid"))
_INSERT_STUDY = insert(_studies)
# The series row (locked) and the instance, if already known, in one round trip.
_LOCK_SERIES = (
    select(
        _series.c.id,
        _series.c.state,
        _series.c.version,
        _instances.c.id.label("instance_id"),
        _instances.c.sha256,
        _instances.c.series_id.label("instance_series_id"),
        _instances.c.path,
    )
    .outerjoin(_instances, _instances.c.sop_instance_uid == bindparam("b_sop"))
    .where(_series.c.series_uid == bindparam("b_uid"))
    .with_for_update(of=_series)
)
_INSERT_SERIES = insert(_series)
_SELECT_INSTANCE = select(
    _instances.c.id, _instances.c.sha256, _instances.c.series_id, _instances.c.path
).where(_instances.c.sop_instance_uid == bindparam("b_uid"))
_INSERT_INSTANCE = insert(_instances)
_UPDATE_INSTANCE = update(_instances).where(_instances.c.id == bindparam("b_id"))
_COUNT_RECEIVED = (
    update(_associations)
    .where(_associations.c.id == bindparam("b_id"))
    .values(
        instances_received=_associations.c.instances_received + 1,
        bytes_received=_associations.c.bytes_received + bindparam("b_bytes"),
    )
)
_TOUCH_SERIES = (
    update(_series)
    .where(_series.c.id == bindparam("b_id"))
    .values(instance_count=_series.c.instance_count + bindparam("b_delta"))
)
_INSERT_EVENT = insert(_events)


@dataclass(frozen=True)
class _Known:
    """The row of an instance already in the store."""

    id: int
    sha256: str
    series_id: int
    path: str


def _record(
    conn: Connection,
    header: InstanceHeader,
    stored: StoredFile,
    association_id: str | None,
    now: datetime,
    event_kind_new: str | None,
) -> RecordResult:
    series_id, state, version, existing = _locate(conn, header, now)
    if association_id is not None:
        conn.execute(_COUNT_RECEIVED, {"b_id": association_id, "b_bytes": stored.size})

    if existing is not None and existing.sha256 == stored.sha256 and existing.path == stored.path:
        _event(conn, EVENT_IDENTICAL, association_id, header, "identical bytes; kept", now)
        return RecordResult(Outcome.IDENTICAL, series_id, False, version)

    values = _instance_values(header, stored, association_id, now)
    values["series_id"] = series_id
    stale_path = None
    if existing is None:
        conn.execute(_INSERT_INSTANCE, values)
        count_delta = 1
        outcome = Outcome.NEW
        if event_kind_new:
            _event(conn, event_kind_new, association_id, header, stored.path, now)
    else:
        conn.execute(_UPDATE_INSTANCE, {**values, "b_id": existing.id})
        outcome = Outcome.REPLACED
        count_delta = 0
        if existing.series_id != series_id:
            # The sender moved the instance to another series: it leaves the old one.
            conn.execute(
                _TOUCH_SERIES, {"b_id": existing.series_id, "b_delta": -1, "updated_at": now}
            )
            count_delta = 1
        if existing.path != stored.path:
            stale_path = existing.path
        _event(
            conn,
            EVENT_REPLACED,
            association_id,
            header,
            f"sha256 {existing.sha256[:12]} -> {stored.sha256[:12]}; newest kept",
            now,
        )

    series_values: dict[str, Any] = {
        "b_id": series_id,
        "b_delta": count_delta,
        "last_received_at": now,
        "updated_at": now,
    }
    reopen = state != SeriesState.RECEIVING
    if reopen:
        version += 1
        series_values.update(
            state=SeriesState.RECEIVING,
            version=version,
            completed_at=None,
            skip_reason=None,
            error=None,
        )
        _event(
            conn,
            EVENT_REOPENED,
            association_id,
            header,
            f"{outcome} instance while {state}; version {version}",
            now,
        )
    conn.execute(_TOUCH_SERIES, series_values)
    return RecordResult(outcome, series_id, reopen, version, stale_path)


def _locate(
    conn: Connection, header: InstanceHeader, now: datetime
) -> tuple[int, str, int, _Known | None]:
    """The series (locked; inserted with its study if new): id, state and version; and the
    instance's row if the store already has it."""
    found = conn.execute(
        _LOCK_SERIES, {"b_uid": header.series_uid, "b_sop": header.sop_instance_uid}
    ).first()
    if found is not None:
        existing = (
            _Known(found.instance_id, found.sha256, found.instance_series_id, found.path)
            if found.instance_id is not None
            else None
        )
        return int(found.id), str(found.state), int(found.version), existing
    series_id = _insert_series(conn, header, _study_id(conn, header, now), now)
    row = conn.execute(_SELECT_INSTANCE, {"b_uid": header.sop_instance_uid}).first()
    existing = _Known(row.id, row.sha256, row.series_id, row.path) if row else None
    return series_id, SeriesState.RECEIVING, 1, existing


def _study_id(conn: Connection, header: InstanceHeader, now: datetime) -> int:
    found = conn.execute(_SELECT_STUDY, {"b_uid": header.study_uid}).scalar()
    if found is not None:
        return int(found)
    result = conn.execute(
        _INSERT_STUDY,
        {
            "study_uid": header.study_uid,
            "patient_id": _clip(header.patient_id, 64),
            "patient_name": _clip(header.patient_name, 324),
            "accession_number": _clip(header.accession_number, 16),
            "study_date": _clip(header.study_date, 8),
            "study_time": _clip(header.study_time, 16),
            "study_description": _clip(header.study_description, 64),
            "created_at": now,
        },
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def _insert_series(conn: Connection, header: InstanceHeader, study_id: int, now: datetime) -> int:
    result = conn.execute(
        _INSERT_SERIES,
        {
            "series_uid": header.series_uid,
            "study_id": study_id,
            "modality": _clip(header.modality, 16),
            "series_number": header.series_number,
            "series_description": _clip(header.series_description, 64),
            "body_part_examined": _clip(header.body_part_examined, 16),
            "state": SeriesState.RECEIVING,
            "version": 1,
            "instance_count": 0,
            "first_received_at": now,
            "last_received_at": now,
            "updated_at": now,
        },
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def _instance_values(
    header: InstanceHeader, stored: StoredFile, association_id: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "sop_instance_uid": header.sop_instance_uid,
        "association_id": association_id,
        "sop_class_uid": header.sop_class_uid,
        "transfer_syntax_uid": header.transfer_syntax_uid,
        "path": stored.path,
        "size_bytes": stored.size,
        "sha256": stored.sha256,
        "received_at": now,
        "instance_number": header.instance_number,
        "image_type": _clip(header.image_type, 128),
        "rows": header.rows,
        "columns": header.columns,
        "number_of_frames": header.number_of_frames,
        "pixel_spacing": _clip(header.pixel_spacing, 64),
        "slice_thickness": header.slice_thickness,
        "image_position": _clip(header.image_position, 128),
        "image_orientation": _clip(header.image_orientation, 192),
        "contrast_bolus_agent": _clip(header.contrast_bolus_agent, 64),
    }


def _event(
    conn: Connection,
    kind: str,
    association_id: str | None,
    header: InstanceHeader,
    detail: str,
    now: datetime,
) -> None:
    conn.execute(
        _INSERT_EVENT,
        {
            "at": now,
            "kind": kind,
            "association_id": association_id,
            "series_uid": header.series_uid,
            "sop_instance_uid": header.sop_instance_uid,
            "detail": detail,
        },
    )


def _clip(value: str | None, length: int) -> str | None:
    return value[:length] if value is not None else None


# --- reconcile ----------------------------------------------------------------------------


def indexed_files(db: Database, series_uid: str) -> dict[str, tuple[datetime, str]]:
    """The indexed spool paths of one series, with when each was recorded and its sha256."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(_instances.c.path, _instances.c.received_at, _instances.c.sha256)
            .join(_series, _series.c.id == _instances.c.series_id)
            .where(_series.c.series_uid == series_uid)
        )
        return {row.path: (row.received_at, row.sha256) for row in rows}
