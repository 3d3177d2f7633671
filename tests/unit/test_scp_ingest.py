"""The listener's store writes (store.ingest), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from ivcontrast.store import ingest
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
from ivcontrast.store.values import AssociationInfo, InstanceHeader, Outcome, StoredFile

CT = "1.2.840.10008.5.1.4.1.1.2"
TS = "1.2.840.10008.1.2.1"


def header(
    sop: str, series: str = "1.2.3.4", study: str = "1.2.3", **extra: object
) -> InstanceHeader:
    fields: dict[str, object] = {
        "modality": "CT",
        "series_number": 3,
        "series_description": "ARTERIAL",
        "body_part_examined": "CHEST",
        "patient_id": "PID1",
        "patient_name": "Doe^Jane",
        "accession_number": "A1",
        "study_date": "20240102",
        "study_time": "101500",
        "study_description": "CT CHEST",
        "instance_number": 7,
        "image_type": "ORIGINAL\\PRIMARY\\AXIAL",
        "rows": 512,
        "columns": 512,
        "pixel_spacing": "0.7\\0.7",
        "slice_thickness": 1.25,
        "image_position": "-250\\-250\\10",
        "image_orientation": "1\\0\\0\\0\\1\\0",
        "contrast_bolus_agent": "IOPAMIDOL",
    }
    fields.update(extra)
    return InstanceHeader(
        sop_class_uid=CT,
        sop_instance_uid=sop,
        study_uid=study,
        series_uid=series,
        transfer_syntax_uid=TS,
        **fields,  # type: ignore[arg-type]
    )


def stored(sop: str, sha: str = "a", series: str = "1.2.3.4", study: str = "1.2.3") -> StoredFile:
    return StoredFile(f"{study}/{series}/{sop}.dcm", 1000, sha * 64)


def info(association_id: str = "assoc-1", listener: str = "host:1") -> AssociationInfo:
    return AssociationInfo(association_id, listener, "MODALITY", "IVCONTRAST", "127.0.0.1", 4242)


def events(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(Event.kind).order_by(Event.id)))


def series_row(db: Database, uid: str = "1.2.3.4") -> Series:
    with db.session() as session:
        return session.scalars(select(Series).where(Series.series_uid == uid)).one()


def test_new_instances_build_study_series_and_instance_rows(any_db: Database) -> None:
    ingest.open_association(any_db, info())
    first = ingest.record_instance(any_db, header("1.2.3.4.1"), stored("1.2.3.4.1"), "assoc-1")
    second = ingest.record_instance(
        any_db, header("1.2.3.4.2", instance_number=8), stored("1.2.3.4.2"), "assoc-1"
    )
    assert first.outcome is second.outcome is Outcome.NEW
    assert not first.series_reopened and first.series_version == 1

    with any_db.session() as session:
        study = session.scalars(select(Study)).one()
        assert (study.study_uid, study.patient_id, study.patient_name) == (
            "1.2.3",
            "PID1",
            "Doe^Jane",
        )
        assert (study.accession_number, study.study_date, study.study_description) == (
            "A1",
            "20240102",
            "CT CHEST",
        )
        series = session.scalars(select(Series)).one()
        assert (series.modality, series.series_number, series.series_description) == (
            "CT",
            3,
            "ARTERIAL",
        )
        assert series.body_part_examined == "CHEST"
        assert series.state == SeriesState.RECEIVING and series.instance_count == 2
        assert series.last_received_at >= series.first_received_at
        row = session.scalars(select(Instance).where(Instance.instance_number == 8)).one()
        assert row.image_type == "ORIGINAL\\PRIMARY\\AXIAL" and row.rows == 512
        assert row.pixel_spacing == "0.7\\0.7" and row.slice_thickness == 1.25
        assert row.image_orientation == "1\\0\\0\\0\\1\\0"
        assert row.contrast_bolus_agent == "IOPAMIDOL"
        assert row.association_id == "assoc-1" and row.path == "1.2.3/1.2.3.4/1.2.3.4.2.dcm"
        assoc = session.get(Association, "assoc-1")
        assert assoc is not None
        assert (assoc.instances_received, assoc.bytes_received) == (2, 2000)
    assert events(any_db) == []


def test_identical_resend_changes_nothing_but_an_event(any_db: Database) -> None:
    ingest.record_instance(any_db, header("1.2.3.4.1"), stored("1.2.3.4.1"), None)
    before = series_row(any_db)
    again = ingest.record_instance(any_db, header("1.2.3.4.1"), stored("1.2.3.4.1"), None)
    after = series_row(any_db)
    assert again.outcome is Outcome.IDENTICAL and not again.series_reopened
    assert after.last_received_at == before.last_received_at
    assert after.instance_count == 1 and after.version == 1
    assert events(any_db) == [ingest.EVENT_IDENTICAL]


def test_different_bytes_keep_the_newest(any_db: Database) -> None:
    ingest.record_instance(any_db, header("1.2.3.4.1"), stored("1.2.3.4.1", "a"), None)
    result = ingest.record_instance(
        any_db, header("1.2.3.4.1", rows=256), stored("1.2.3.4.1", "b"), None
    )
    assert result.outcome is Outcome.REPLACED and not result.series_reopened
    with any_db.session() as session:
        row = session.scalars(select(Instance)).one()
        assert row.sha256 == "b" * 64 and row.rows == 256
    assert series_row(any_db).instance_count == 1
    assert events(any_db) == [ingest.EVENT_REPLACED]


def _complete(db: Database, state: SeriesState = SeriesState.CLASSIFIED) -> None:
    with db.write() as session:
        session.execute(
            update(Series).values(
                state=state, completed_at=utcnow(), skip_reason="too few slices", error="x"
            )
        )


@pytest.mark.parametrize("how", ["late instance", "replaced instance"])
def test_a_completed_series_is_reopened(any_db: Database, how: str) -> None:
    ingest.record_instance(any_db, header("1.2.3.4.1"), stored("1.2.3.4.1"), None)
    _complete(any_db)
    if how == "late instance":
        result = ingest.record_instance(any_db, header("1.2.3.4.2"), stored("1.2.3.4.2"), None)
    else:
        result = ingest.record_instance(any_db, header("1.2.3.4.1"), stored("1.2.3.4.1", "c"), None)
    assert result.series_reopened and result.series_version == 2
    series = series_row(any_db)
    assert series.state == SeriesState.RECEIVING and series.version == 2
    assert series.completed_at is None and series.skip_reason is None and series.error is None
    assert ingest.EVENT_REOPENED in events(any_db)


def test_identical_resend_does_not_reopen(any_db: Database) -> None:
    ingest.record_instance(any_db, header("1.2.3.4.1"), stored("1.2.3.4.1"), None)
    _complete(any_db, SeriesState.QUEUED)
    result = ingest.record_instance(any_db, header("1.2.3.4.1"), stored("1.2.3.4.1"), None)
    assert not result.series_reopened
    series = series_row(any_db)
    assert series.state == SeriesState.QUEUED and series.version == 1


def test_an_instance_moved_to_another_series(any_db: Database) -> None:
    ingest.record_instance(any_db, header("1.2.3.4.1"), stored("1.2.3.4.1"), None)
    moved = ingest.record_instance(
        any_db,
        header("1.2.3.4.1", series="1.2.3.5"),
        stored("1.2.3.4.1", "d", series="1.2.3.5"),
        None,
    )
    assert moved.outcome is Outcome.REPLACED
    assert moved.stale_path == "1.2.3/1.2.3.4/1.2.3.4.1.dcm"
    assert series_row(any_db, "1.2.3.4").instance_count == 0
    assert series_row(any_db, "1.2.3.5").instance_count == 1


def test_association_lifecycle(any_db: Database) -> None:
    ingest.open_association(any_db, info("a1"))
    ingest.count_failure(any_db, "a1")
    assert ingest.close_association(any_db, "a1", AssociationState.RELEASED)
    assert not ingest.close_association(any_db, "a1", AssociationState.ABORTED)  # already closed
    ingest.reject_association(any_db, info("a2"), "calling AE title 'X' is not in the allow-list")
    with any_db.session() as session:
        a1 = session.get(Association, "a1")
        a2 = session.get(Association, "a2")
        assert a1 is not None and a2 is not None
        assert a1.state == AssociationState.RELEASED and a1.ended_at is not None
        assert a1.instances_failed == 1
        assert (a1.calling_ae, a1.called_ae, a1.peer_host, a1.peer_port) == (
            "MODALITY",
            "IVCONTRAST",
            "127.0.0.1",
            4242,
        )
        assert a2.state == AssociationState.REJECTED and "allow-list" in (a2.reason or "")


def test_open_associations_of_dead_listeners_are_aborted(any_db: Database) -> None:
    ingest.open_association(any_db, info("live", "here:10"))
    ingest.open_association(any_db, info("dead", "here:11"))
    ingest.open_association(any_db, info("elsewhere", "there:11"))
    ingest.open_association(any_db, info("like", "here_x:11"))  # '_' is not a wildcard
    marked = ingest.abort_orphaned_associations(any_db, "here", lambda pid: pid == 10)
    assert marked == ["dead"]
    assert ingest.abort_listener_associations(any_db, "here:10", "listener stopped") == 1
    with any_db.session() as session:
        states = dict(session.execute(select(Association.id, Association.state)).all())
    assert states == {
        "live": AssociationState.ABORTED,
        "dead": AssociationState.ABORTED,
        "elsewhere": AssociationState.OPEN,
        "like": AssociationState.OPEN,
    }


def test_concurrent_writers_of_one_series(any_db: Database) -> None:
    """Several listeners receive the same new study at once: no lost or failed instance."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def receive(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(10):
                sop = f"1.2.3.4.{worker}.{i + 1}"
                ingest.record_instance(any_db, header(sop), stored(sop), None)
                # Everyone also re-sends one shared instance.
                ingest.record_instance(any_db, header("1.2.3.4.99"), stored("1.2.3.4.99"), None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=receive, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert series_row(any_db).instance_count == 41
    with any_db.session() as session:
        assert len(session.scalars(select(Study)).all()) == 1
        assert len(session.scalars(select(Instance)).all()) == 41


def test_indexed_files(any_db: Database) -> None:
    when = utcnow() - timedelta(minutes=1)
    ingest.record_instance(any_db, header("1.2.3.4.1"), stored("1.2.3.4.1"), None, now=when)
    assert ingest.indexed_files(any_db, "1.2.3.4") == {
        "1.2.3/1.2.3.4/1.2.3.4.1.dcm": (when, "a" * 64)
    }
    assert ingest.indexed_files(any_db, "1.2.3.5") == {}
