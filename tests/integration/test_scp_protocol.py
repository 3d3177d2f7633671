"""The listener over loopback: C-ECHO, C-STORE, access control, bad input, disk pressure.

A listener runs in this process on a free port; pynetdicom SCUs and DCMTK's storescu and
echoscu (subprocesses, TCP_NODELAY=1) talk to it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.uid import (
    JPEG2000,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MRImageStorage,
    RLELossless,
)
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import select, update

from ivcontrast.scp import handlers
from ivcontrast.store import ingest
from ivcontrast.store.models import (
    Association,
    AssociationState,
    Event,
    Instance,
    Series,
    SeriesState,
    Study,
)
from tests.support import dicom_factory
from tests.support.scp_harness import (
    DCMTK_ENV,
    InProcessListener,
    Scu,
    echoscu,
    encoded,
    spool_path,
    spooled_dataset,
    storescu,
    storescu_command,
)


def associations(node: InProcessListener) -> list[Association]:
    with node.db.session() as session:
        return list(session.scalars(select(Association).order_by(Association.started_at)))


def instances(node: InProcessListener) -> list[Instance]:
    with node.db.session() as session:
        return list(session.scalars(select(Instance)))


def event_kinds(node: InProcessListener) -> list[str]:
    with node.db.session() as session:
        return list(session.scalars(select(Event.kind).order_by(Event.id)))


def wait_closed(node: InProcessListener, count: int) -> list[Association]:
    """Associations are closed in the store just after the peer is told; wait for that."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = associations(node)
        if len(rows) >= count and all(a.state != AssociationState.OPEN for a in rows):
            return rows
        time.sleep(0.05)
    return associations(node)


def test_c_echo(listener: InProcessListener) -> None:
    out = echoscu(listener.port)
    assert out.returncode == 0, out.stderr
    scu = Scu()
    with scu.associate(listener.port, [(Verification, [ExplicitVRLittleEndian])]) as assoc:
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
    rows = wait_closed(listener, 2)
    assert [a.state for a in rows] == [AssociationState.RELEASED] * 2
    assert {a.calling_ae for a in rows} == {"ECHOSCU", "TESTSCU"}


def test_multi_series_study_in_one_association(listener: InProcessListener) -> None:
    study = dicom_factory.new_uid()
    arterial = dicom_factory.ct_series(5, rows=32, columns=32, study_uid=study, series_number=2)
    venous = dicom_factory.ct_series(3, rows=32, columns=32, study_uid=study, series_number=3)
    others = [dicom_factory.mr_image(study), dicom_factory.secondary_capture(study)]
    sent = arterial + venous + others

    statuses = Scu().send(listener.port, sent)

    assert statuses == [0x0000] * len(sent)
    for ds in sent:
        path = spool_path(listener.spool, ds)
        assert spooled_dataset(path) == encoded(ds, ExplicitVRLittleEndian)
    with listener.db.session() as session:
        assert [s.study_uid for s in session.scalars(select(Study))] == [study]
        counts = {s.series_uid: s.instance_count for s in session.scalars(select(Series))}
        modality = {s.series_uid: s.modality for s in session.scalars(select(Series))}
    assert counts == {
        arterial[0].SeriesInstanceUID: 5,
        venous[0].SeriesInstanceUID: 3,
        others[0].SeriesInstanceUID: 1,
        others[1].SeriesInstanceUID: 1,
    }
    assert modality[others[0].SeriesInstanceUID] == "MR"
    (assoc,) = wait_closed(listener, 1)
    assert assoc.state == AssociationState.RELEASED
    assert (assoc.instances_received, assoc.instances_failed) == (len(sent), 0)
    assert {i.association_id for i in instances(listener)} == {assoc.id}
    assert listener.incoming() == []


def test_one_association_per_image_with_storescu(
    listener: InProcessListener, tmp_path: Path
) -> None:
    files = dicom_factory.write_files(
        dicom_factory.ct_series(5, rows=16, columns=16), tmp_path / "in"
    )
    for path in files:
        result = storescu(listener.port, [path])
        assert result.returncode == 0 and result.succeeded == [path], result.output
    rows = wait_closed(listener, 5)
    assert len(rows) == 5
    assert all(a.state == AssociationState.RELEASED and a.instances_received == 1 for a in rows)
    assert len(instances(listener)) == 5


def test_four_concurrent_associations(listener: InProcessListener, tmp_path: Path) -> None:
    folders = []
    for k in range(4):
        series = dicom_factory.ct_series(20, rows=64, columns=64)
        dicom_factory.write_files(series, tmp_path / f"series{k}")
        folders.append(tmp_path / f"series{k}")
    procs = [
        subprocess.Popen(
            storescu_command(listener.port, sorted(folder.iterdir())),
            env={**os.environ, **DCMTK_ENV},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for folder in folders
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    assert sum(o.count("Received Store Response (Success)") for o in outputs) == 80
    rows = wait_closed(listener, 4)
    assert [a.instances_received for a in rows] == [20] * 4
    with listener.db.session() as session:
        assert sorted(s.instance_count for s in session.scalars(select(Series))) == [20] * 4


def test_resent_instances(listener: InProcessListener) -> None:
    scu = Scu()
    first, second = dicom_factory.ct_series(2, rows=16, columns=16)
    assert scu.send(listener.port, [first]) == [0]
    path = spool_path(listener.spool, first)
    original = path.read_bytes()

    assert scu.send(listener.port, [first]) == [0]  # identical: a no-op
    assert path.read_bytes() == original
    assert event_kinds(listener) == [ingest.EVENT_IDENTICAL]

    first.WindowCenter = 40  # different bytes: the newest is kept
    assert scu.send(listener.port, [first]) == [0]
    assert spooled_dataset(path) == encoded(first, ExplicitVRLittleEndian)
    assert event_kinds(listener)[-1] == ingest.EVENT_REPLACED

    # The worker completed the series; a changed instance re-opens it...
    with listener.db.write() as session:
        session.execute(update(Series).values(state=SeriesState.CLASSIFIED))
    first.WindowCenter = 50
    assert scu.send(listener.port, [first]) == [0]
    with listener.db.session() as session:
        series = session.scalars(select(Series)).one()
        assert (series.state, series.version, series.instance_count) == ("receiving", 2, 1)
        series_id = series.id
    # ... and so does a late new instance.
    with listener.db.write() as session:
        session.execute(update(Series).values(state=SeriesState.QUEUED))
    assert scu.send(listener.port, [second]) == [0]
    with listener.db.session() as session:
        series = session.get(Series, series_id)
        assert series is not None
        assert (series.state, series.version, series.instance_count) == ("receiving", 3, 2)
    assert event_kinds(listener).count(ingest.EVENT_REOPENED) == 2


def test_rejected_calling_and_called_ae(
    make_listener: Callable[..., InProcessListener], tmp_path: Path
) -> None:
    node = make_listener(allowed_calling_aes=["GOOD", "LOCAL@127.0.0.1", "FAR@192.0.2.1"])
    (path,) = dicom_factory.write_files([dicom_factory.ct_image(rows=8, columns=8)], tmp_path)

    bad_calling = storescu(node.port, [path], calling="INTRUDER")
    assert bad_calling.returncode != 0
    assert "Calling AE Title Not Recognized" in bad_calling.output
    bad_called = storescu(node.port, [path], calling="GOOD", called="NOT_US")
    assert bad_called.returncode != 0
    assert "Called AE Title Not Recognized" in bad_called.output

    for title, accepted in (("LOCAL", True), ("FAR", False)):
        scu = Scu(title)
        with scu.associate(node.port, [(Verification, [ExplicitVRLittleEndian])]) as assoc:
            assert assoc.is_established is accepted
            if not accepted:
                assert assoc.is_rejected
                rj = assoc.acceptor.primitive
                assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x03)

    rows = wait_closed(node, 4)
    rejected = {a.calling_ae: a.reason for a in rows if a.state == AssociationState.REJECTED}
    assert set(rejected) == {"INTRUDER", "GOOD", "FAR"}
    assert "not in the allow-list" in (rejected["INTRUDER"] or "")
    assert "'NOT_US'" in (rejected["GOOD"] or "")
    assert "not allowed from 127.0.0.1" in (rejected["FAR"] or "")
    assert instances(node) == []


def test_too_many_associations_are_rejected_and_recorded(
    make_listener: Callable[..., InProcessListener],
) -> None:
    node = make_listener(max_associations=1)
    first, second = Scu("FIRST"), Scu("SECOND")
    contexts = [(Verification, [ExplicitVRLittleEndian])]
    with first.associate(node.port, contexts) as held:
        assert held.is_established
        with second.associate(node.port, contexts) as refused:
            assert refused.is_rejected
    rows = wait_closed(node, 2)
    (row,) = [a for a in rows if a.calling_ae == "SECOND"]
    assert row.state == AssociationState.REJECTED
    assert "association server" in (row.reason or "")


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the bad UIDs we send
def test_bad_input_gets_failure_statuses_and_nothing_else_is_lost(
    listener: InProcessListener, tmp_path: Path
) -> None:
    good = dicom_factory.ct_series(2, rows=8, columns=8)
    malformed = dicom_factory.malformed_file(tmp_path)
    raw_malformed = spooled_dataset(malformed)
    wrong_class = dicom_factory.ct_image(rows=8, columns=8)  # sent as MR below
    wrong_instance = dicom_factory.ct_image(rows=8, columns=8)
    bad_uid = dicom_factory.ct_image(rows=8, columns=8)
    bad_uid.StudyInstanceUID = "1.2.03.4"
    traversal = dicom_factory.ct_image(rows=8, columns=8)
    traversal.SeriesInstanceUID = "../../../tmp"
    no_series = dicom_factory.ct_image(rows=8, columns=8)
    del no_series.SeriesInstanceUID
    ts = ExplicitVRLittleEndian

    scu = Scu()
    contexts = [(CTImageStorage, [ts]), (MRImageStorage, [ts])]
    with scu.associate(listener.port, contexts) as assoc:
        send = Scu.send_raw
        statuses = {
            "good0": send(assoc, CTImageStorage, good[0].SOPInstanceUID, ts, encoded(good[0], ts)),
            "malformed": send(assoc, CTImageStorage, "1.2.3.999", ts, raw_malformed),
            "wrong_class": send(
                assoc, MRImageStorage, wrong_class.SOPInstanceUID, ts, encoded(wrong_class, ts)
            ),
            "wrong_instance": send(
                assoc, CTImageStorage, "1.2.3.4.5", ts, encoded(wrong_instance, ts)
            ),
            "bad_uid": send(
                assoc, CTImageStorage, bad_uid.SOPInstanceUID, ts, encoded(bad_uid, ts)
            ),
            "traversal": send(
                assoc, CTImageStorage, traversal.SOPInstanceUID, ts, encoded(traversal, ts)
            ),
            "no_series": send(
                assoc, CTImageStorage, no_series.SOPInstanceUID, ts, encoded(no_series, ts)
            ),
            "garbage": send(assoc, CTImageStorage, "1.2.3.998", ts, b"\xff" * 7),
            "good1": send(assoc, CTImageStorage, good[1].SOPInstanceUID, ts, encoded(good[1], ts)),
        }
        assert assoc.is_established  # bad input never ends the association

    assert statuses == {
        "good0": 0x0000,
        "malformed": handlers.CANNOT_UNDERSTAND,
        "wrong_class": handlers.SOP_CLASS_MISMATCH,
        "wrong_instance": handlers.INSTANCE_MISMATCH,
        "bad_uid": handlers.INVALID_UID,
        "traversal": handlers.INVALID_UID,
        "no_series": handlers.INVALID_UID,
        "garbage": handlers.CANNOT_UNDERSTAND,
        "good1": 0x0000,
    }
    files = sorted(p.relative_to(listener.spool) for p in listener.spool.rglob("*.dcm"))
    assert files == sorted(
        spool_path(listener.spool, ds).relative_to(listener.spool) for ds in good
    )
    assert len(instances(listener)) == 2
    assert listener.incoming() == []
    (row,) = wait_closed(listener, 1)
    assert (row.instances_received, row.instances_failed) == (2, 7)


def test_unexpected_error_is_a_failure_status_and_the_association_goes_on(
    listener: InProcessListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, fine = dicom_factory.ct_series(2, rows=8, columns=8)
    real = ingest.record_instance

    def flaky(db, header, stored, association_id, **kw):  # type: ignore[no-untyped-def]
        if header.sop_instance_uid == broken.SOPInstanceUID:
            raise RuntimeError("store unavailable")
        return real(db, header, stored, association_id, **kw)

    monkeypatch.setattr(ingest, "record_instance", flaky)
    assert Scu().send(listener.port, [broken, fine]) == [handlers.PROCESSING_FAILURE, 0x0000]
    # Not acknowledged, so not kept: the sender will send it again.
    assert not spool_path(listener.spool, broken).exists()
    assert spool_path(listener.spool, fine).exists()


def test_disk_pressure_answers_out_of_resources(
    make_listener: Callable[..., InProcessListener], tmp_path: Path
) -> None:
    node = make_listener(min_free_mb=10**9)
    ds = dicom_factory.ct_image(rows=8, columns=8)
    assert Scu().send(node.port, [ds]) == [handlers.OUT_OF_RESOURCES]
    (path,) = dicom_factory.write_files([dicom_factory.ct_image(rows=8, columns=8)], tmp_path)
    result = storescu(node.port, [path])
    assert result.succeeded == [] and "Refused: OutOfResources" in result.output
    assert list(node.spool.rglob("*.dcm")) == []
    assert instances(node) == []
    assert node.incoming() == []


@pytest.mark.parametrize(
    "ts",
    [
        ImplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
        JPEGBaseline8Bit,
        JPEGExtended12Bit,
        JPEGLossless,
        JPEGLosslessSV1,
        JPEGLSLossless,
        JPEGLSNearLossless,
        JPEG2000Lossless,
        JPEG2000,
        RLELossless,
    ],
)
def test_transfer_syntaxes_are_stored_byte_exact(listener: InProcessListener, ts: str) -> None:
    ds = dicom_factory.ct_image(rows=16, columns=16)
    if ts in (ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = ts
    else:
        ds = dicom_factory.encapsulated(ds, ts)
    assert Scu().send(listener.port, [ds]) == [0x0000]
    path = spool_path(listener.spool, ds)
    assert spooled_dataset(path) == encoded(ds, ts)
    (row,) = instances(listener)
    assert row.transfer_syntax_uid == ts and (row.rows, row.columns) == (16, 16)
    from pydicom import dcmread

    assert dcmread(path).file_meta.TransferSyntaxUID == ts


def test_storescu_sends_compressed_files_as_they_are(
    listener: InProcessListener, tmp_path: Path
) -> None:
    from pydicom import dcmread

    ds = dicom_factory.encapsulated(dicom_factory.ct_image(rows=32, columns=32), RLELossless)
    (path,) = dicom_factory.write_files([ds], tmp_path)
    result = storescu(listener.port, [path], extra=["-xr"])  # propose RLE, not only uncompressed
    assert result.succeeded == [path], result.output
    stored = dcmread(spool_path(listener.spool, ds))
    assert stored.file_meta.TransferSyntaxUID == RLELossless
    assert stored.PixelData == ds.PixelData
    assert (stored.pixel_array == ds.pixel_array).all()


def test_peer_that_drops_or_garbles_the_connection_is_recorded_as_aborted(
    listener: InProcessListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    contexts = [(CTImageStorage, [ExplicitVRLittleEndian])]
    # 1. The connection is closed after one instance, without a release.
    scu = Scu("DROPPER")
    with scu.associate(listener.port, contexts) as assoc:
        ds = dicom_factory.ct_image(rows=8, columns=8)
        assert assoc.send_c_store(ds).Status == 0x0000
        assoc.dul.socket.socket.shutdown(socket.SHUT_RDWR)
        assoc.abort()
    # 2. An unknown PDU type arrives.
    scu = Scu("GARBLER")
    with scu.associate(listener.port, contexts) as assoc:
        assoc.dul.socket.socket.sendall(b"\x09\x00\x00\x00\x00\x02ab")
        time.sleep(0.5)
    # 3. The listener's DUL itself fails (a bug, say): it aborts, and the end is recorded.
    from ivcontrast.scp import reactor

    def broken(self: reactor.FastDUL) -> bool:
        raise RuntimeError("bug in the reactor")

    scu = Scu("VICTIM")
    with scu.associate(listener.port, contexts) as assoc:
        monkeypatch.setattr(reactor.FastDUL, "_is_transport_event", broken)
        assoc.dul.socket.socket.sendall(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")
        time.sleep(0.5)
    monkeypatch.undo()

    rows = {a.calling_ae: a for a in wait_closed(listener, 3)}
    assert {k: v.state for k, v in rows.items()} == {
        "DROPPER": AssociationState.ABORTED,
        "GARBLER": AssociationState.ABORTED,
        "VICTIM": AssociationState.ABORTED,
    }
    assert rows["DROPPER"].instances_received == 1
    assert len(instances(listener)) == 1


def test_pynetdicom_own_reactor_still_works(
    make_listener: Callable[..., InProcessListener], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback for a pynetdicom other than 3.0.x: its own classes, slower, same result."""
    from ivcontrast.scp import reactor

    monkeypatch.setattr(reactor, "FAST_REACTOR", False)
    node = make_listener()
    sent = dicom_factory.ct_series(4, rows=16, columns=16)
    assert Scu().send(node.port, sent) == [0x0000] * len(sent)
    for ds in sent:
        assert spooled_dataset(spool_path(node.spool, ds)) == encoded(ds, ExplicitVRLittleEndian)
    (assoc,) = wait_closed(node, 1)
    assert (assoc.state, assoc.instances_received) == (AssociationState.RELEASED, 4)
