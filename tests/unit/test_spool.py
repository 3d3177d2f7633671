"""The raw spool: UID validation, paths, file meta, durable writes, clean-up, reconcile."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread

from ivcontrast.processes import pid_alive
from ivcontrast.scp import spool as spool_module
from ivcontrast.scp.spool import (
    IMPLEMENTATION_CLASS_UID,
    Spool,
    SpoolFull,
    file_meta,
    is_valid_uid,
    parse_temp_name,
    reconcile,
    relative_path,
)
from ivcontrast.store import ingest
from ivcontrast.store.db import Database
from ivcontrast.store.models import Event, Instance, Series
from ivcontrast.store.values import StoredFile
from tests.support import dicom_factory
from tests.support.scp_harness import encoded


@pytest.mark.parametrize(
    "uid",
    [
        "1.2.840.10008.5.1.4.1.1.2",
        "0",
        "0.0",
        "2.25.324941205995629469271182618020246621894",
        "1." + "2" * 62,  # 64 characters
    ],
)
def test_valid_uids(uid: str) -> None:
    assert is_valid_uid(uid)


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "1.2.03",  # leading zero
        "01.2",
        "1..2",  # empty component
        ".1.2",
        "1.2.",
        "1.2.3a",
        "1.2.3 ",
        "1.2.3\0",
        "../../etc/passwd",
        "1/2",
        "1." + "2" * 63,  # 65 characters
        "\u0661.\u0662",  # Arabic-Indic digits: str.isdigit() says yes, DICOM says no
    ],
)
def test_invalid_uids(uid: str) -> None:
    assert not is_valid_uid(uid)


def test_relative_path_is_built_from_valid_uids_only() -> None:
    assert relative_path("1.2", "1.2.3", "1.2.3.4") == "1.2/1.2.3/1.2.3.4.dcm"
    with pytest.raises(ValueError, match="Series Instance UID"):
        relative_path("1.2", "../x", "1.2.3.4")
    with pytest.raises(ValueError, match="SOP Instance UID"):
        relative_path("1.2", "1.2.3", "1.2.3.04")


def test_file_meta_is_a_valid_part10_header() -> None:
    meta = file_meta("1.2.840.10008.5.1.4.1.1.2", "1.2.3.45", "1.2.840.10008.1.2.1", "SENDER")
    assert meta[:128] == b"\0" * 128 and meta[128:132] == b"DICM"
    info = dcmread(BytesIO(meta + b"\x08\x00\x18\x00UI\x08\x001.2.3.45"), force=True).file_meta
    assert info.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert info.MediaStorageSOPInstanceUID == "1.2.3.45"
    assert info.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert info.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert info.SourceApplicationEntityTitle == "SENDER"
    assert info.FileMetaInformationGroupLength == len(meta) - 132 - 12


def test_write_stores_meta_and_received_bytes_durably(tmp_path: Path) -> None:
    ds = dicom_factory.ct_image(rows=16, columns=16)
    body = encoded(ds, "1.2.840.10008.1.2.1")
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    rel = relative_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, "1.2.840.10008.1.2.1", "SCU")
    stored = spool.write(rel, meta, memoryview(body))

    path = tmp_path / "spool" / rel
    assert path.read_bytes() == meta + body
    assert stored.size == len(meta) + len(body)
    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert dcmread(path).SOPInstanceUID == ds.SOPInstanceUID
    assert list((tmp_path / "spool" / ".incoming").iterdir()) == []


def test_write_replaces_atomically_and_recreates_a_removed_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.prepare()
    spool.write("1.2/1.2.3/1.2.3.4.dcm", b"M", b"first")
    spool.write("1.2/1.2.3/1.2.3.4.dcm", b"M", b"second")
    assert (tmp_path / "1.2/1.2.3/1.2.3.4.dcm").read_bytes() == b"Msecond"
    # A clean-up elsewhere removed the series folder the spool has cached as existing.
    (tmp_path / "1.2/1.2.3/1.2.3.4.dcm").unlink()
    (tmp_path / "1.2/1.2.3").rmdir()
    spool.write("1.2/1.2.3/1.2.3.5.dcm", b"M", b"third")
    assert (tmp_path / "1.2/1.2.3/1.2.3.5.dcm").read_bytes() == b"Mthird"


def test_free_space_minimum_refuses_before_writing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, min_free_mb=10**9)  # a petabyte
    spool.prepare()
    with pytest.raises(SpoolFull, match="MiB free"):
        spool.write("1.2/1.2.3/1.2.3.4.dcm", b"M", b"data")
    assert not (tmp_path / "1.2").exists()
    assert list((tmp_path / ".incoming").iterdir()) == []


def test_failed_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path)
    spool.prepare()

    def broken_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(spool_module, "_sync_data", broken_sync)
    with pytest.raises(OSError, match="Input/output"):
        spool.write("1.2/1.2.3/1.2.3.4.dcm", b"M", b"data")
    assert list((tmp_path / ".incoming").iterdir()) == []
    assert not (tmp_path / "1.2/1.2.3/1.2.3.4.dcm").exists()


def test_temp_names() -> None:
    assert parse_temp_name("my-host-123-abcdef.tmp") == spool_module.TempName("my-host", 123)
    assert parse_temp_name("host-x-abc.tmp") is None
    assert parse_temp_name("host-123-abc.dcm") is None


def test_clean_incoming_removes_files_of_dead_processes_and_old_files(tmp_path: Path) -> None:
    spool = Spool(tmp_path, host="here")
    spool.prepare()
    incoming = tmp_path / ".incoming"
    live = incoming / f"here-{os.getpid()}-a.tmp"
    dead = incoming / "here-999999999-b.tmp"
    other_host = incoming / "there-1-c.tmp"
    old_other_host = incoming / "there-2-d.tmp"
    for path in (live, dead, other_host, old_other_host):
        path.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(old_other_host, (two_hours_ago, two_hours_ago))

    removed = spool.clean_incoming(pid_alive, max_age=timedelta(hours=1))

    assert removed == 2
    assert sorted(p.name for p in incoming.iterdir()) == sorted([live.name, other_host.name])


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(999999999)
    assert not pid_alive(0)


def _spool_file(spool: Spool, ds: object, ts: str = "1.2.840.10008.1.2.1") -> StoredFile:
    rel = relative_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)  # type: ignore[attr-defined]
    meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ts, "SCU")  # type: ignore[attr-defined]
    return spool.write(rel, meta, encoded(ds, ts))  # type: ignore[arg-type]


def test_reconcile_indexes_files_the_store_does_not_know(tmp_path: Path, db: Database) -> None:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    series = dicom_factory.ct_series(3, rows=8, columns=8)
    known = _spool_file(spool, series[0])
    from ivcontrast.scp.header import instance_header, read_header

    header = instance_header(
        read_header(BytesIO(encoded(series[0], "1.2.840.10008.1.2.1")), "1.2.840.10008.1.2.1"),
        "1.2.840.10008.1.2.1",
    )
    ingest.record_instance(db, header, known, None)
    # A crash between rename and commit left two files unindexed; a foreign file sits
    # at a path that does not match its UIDs.
    _spool_file(spool, series[1])
    _spool_file(spool, series[2])
    foreign = dicom_factory.ct_image(rows=8, columns=8)
    stored = _spool_file(spool, foreign)
    (spool.root / stored.path).rename(spool.root / Path(stored.path).with_name("1.2.3.dcm"))

    assert reconcile(spool, db) == 2
    assert reconcile(spool, db) == 0  # idempotent

    with db.session() as session:
        paths = {i.path: i for i in session.query(Instance)}
        assert len(paths) == 3
        row = paths[
            relative_path(
                series[1].StudyInstanceUID, series[1].SeriesInstanceUID, series[1].SOPInstanceUID
            )
        ]
        assert row.rows == 8 and row.association_id is None
        assert row.sha256 == hashlib.sha256(encoded(series[1], "1.2.840.10008.1.2.1")).hexdigest()
        (s,) = session.query(Series).all()
        assert s.instance_count == 3
        kinds = [e.kind for e in session.query(Event)]
        assert kinds.count(ingest.EVENT_RECONCILED) == 2


def test_reconcile_reindexes_a_file_replaced_after_its_row(tmp_path: Path, db: Database) -> None:
    from ivcontrast.scp.header import instance_header, read_header

    spool = Spool(tmp_path / "spool")
    spool.prepare()
    ds = dicom_factory.ct_image(rows=8, columns=8)
    ts = "1.2.840.10008.1.2.1"
    header = instance_header(read_header(BytesIO(encoded(ds, ts)), ts), ts)
    first = _spool_file(spool, ds)
    ingest.record_instance(db, header, first, None, now=ingest.utcnow() - timedelta(minutes=5))
    # Re-sent with identical bytes: the file is rewritten (newer), nothing to do.
    _spool_file(spool, ds)
    assert reconcile(spool, db) == 0
    # Re-sent with other bytes, and the listener died before the commit.
    ds.SeriesDescription = "changed"
    second = _spool_file(spool, ds)
    assert reconcile(spool, db) == 1
    with db.session() as session:
        (row,) = session.query(Instance).all()
        assert row.sha256 == second.sha256 != first.sha256


HOLD_IN_CHILD = """
import sys, time
from pathlib import Path
from ivcontrast.scp.spool import Spool
spool = Spool(Path(sys.argv[1]))
with spool.instance_lock(sys.argv[2]):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def test_instance_lock_excludes_another_process_and_other_threads(tmp_path: Path) -> None:
    import subprocess
    import sys
    import threading

    spool = Spool(tmp_path / "spool")
    spool.prepare()
    stripe = spool_module.InstanceLocks(spool.root / spool_module.LOCK_FILE).stripe
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_IN_CHILD, str(spool.root), "1.2.3.4", "1.0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        started = time.monotonic()
        other = next(f"1.2.{n}" for n in range(99) if stripe(f"1.2.{n}") != stripe("1.2.3.4"))
        with spool.instance_lock(other):
            assert time.monotonic() - started < 0.5  # another UID's stripe is free
        with spool.instance_lock("1.2.3.4"):
            waited = time.monotonic() - started
        assert waited > 0.5, "the other process's lock did not hold this one off"
    finally:
        child.wait(10)

    order: list[str] = []

    def take() -> None:
        with spool.instance_lock("1.2.3.4"):
            order.append("thread")

    with spool.instance_lock("1.2.3.4"):
        worker = threading.Thread(target=take)
        worker.start()
        time.sleep(0.2)
        order.append("main")
    worker.join(5)
    assert order == ["main", "thread"]
    assert not any(p.name == spool_module.LOCK_FILE for p in spool.incoming.iterdir())
