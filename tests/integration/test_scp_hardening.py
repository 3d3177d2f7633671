"""Hostile or careless peers over loopback (issue 14): re-sent instances racing each other,
a dataset encoded in another transfer syntax than its presentation context's, list settings
given with ``--set``, and peer bytes in the log."""

from __future__ import annotations

import copy
import hashlib
import logging
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLossless,
)
from sqlalchemy import select

from ivcontrast.store import ingest
from ivcontrast.store.models import Instance
from tests.support import dicom_factory
from tests.support.scp_harness import (
    InProcessListener,
    ScpProcess,
    Scu,
    dcmtk,
    echoscu,
    encoded,
    spool_path,
    spooled_dataset,
)


def variant(series: list[Dataset], number: int) -> list[Dataset]:
    """The same SOP Instance UIDs with other bytes: InstanceNumber and a pixel differ."""
    out = []
    for ds in series:
        other = copy.deepcopy(ds)
        other.InstanceNumber = number
        other.PixelData = bytes([number % 256]) + bytes(other.PixelData)[1:]
        out.append(other)
    return out


def test_same_instance_sent_at_once_with_other_bytes_file_and_row_agree(
    listener: InProcessListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two associations send the same SOP Instance UIDs at the same moment, each with its
    # own bytes: whichever wins, the spooled file and the store's row must describe it.
    # The first row of each instance is slow to commit (a busy database): the window in
    # which the other sender's file can replace this one before this row is written.
    record = ingest.record_instance
    first: set[str] = set()
    first_lock = threading.Lock()

    def slow_record(db: Any, header: Any, *args: Any, **kwargs: Any) -> Any:
        with first_lock:
            is_first = header.sop_instance_uid not in first
            first.add(header.sop_instance_uid)
        if is_first:
            time.sleep(0.03)
        return record(db, header, *args, **kwargs)

    monkeypatch.setattr(ingest, "record_instance", slow_record)
    series = dicom_factory.ct_series(60, rows=16, columns=16)
    senders = [variant(series, 1001), variant(series, 2002)]
    start = threading.Barrier(len(senders))
    statuses: list[list[int]] = []

    def send(datasets: list[Dataset]) -> None:
        start.wait()
        statuses.append(Scu(f"SCU{len(datasets)}").send(listener.port, datasets))

    threads = [threading.Thread(target=send, args=(d,)) for d in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [set(s) for s in statuses] == [{0x0000}, {0x0000}]

    with listener.db.session() as session:
        rows = {i.sop_instance_uid: i for i in session.scalars(select(Instance))}
    assert len(rows) == len(series)
    disagree = []
    for ds in series:
        path = spool_path(listener.spool, ds)
        row = rows[ds.SOPInstanceUID]
        stored = dcmread(path, stop_before_pixels=True)
        digest = hashlib.sha256(spooled_dataset(path)).hexdigest()
        if digest != row.sha256 or stored.InstanceNumber != row.instance_number:
            disagree.append(ds.SOPInstanceUID)
    assert disagree == [], f"{len(disagree)} spool files differ from their rows"
    assert {i.transfer_syntax_uid for i in rows.values()} == {ExplicitVRLittleEndian}


def test_the_lock_file_stays_out_of_the_spool_folders(listener: InProcessListener) -> None:
    Scu().send(listener.port, dicom_factory.ct_series(2, rows=16, columns=16))
    assert listener.incoming() == []
    studies = [p for p in Path(listener.spool).iterdir() if p.is_dir() and p.name[0] != "."]
    assert len(studies) == 1


@pytest.mark.parametrize(
    ("context_syntax", "encoded_as"),
    [
        (ImplicitVRLittleEndian, ExplicitVRLittleEndian),
        (ExplicitVRLittleEndian, ImplicitVRLittleEndian),
        (JPEGLossless, ImplicitVRLittleEndian),
    ],
)
def test_dataset_in_another_transfer_syntax_than_its_context_is_refused(
    listener: InProcessListener, context_syntax: str, encoded_as: str
) -> None:
    # Stored with the context's file meta, such a file cannot be read (DCMTK refuses it):
    # the sender hears "cannot understand" and nothing is kept.
    ds = dicom_factory.ct_image(rows=16, columns=16)
    raw = encoded(ds, encoded_as)
    with Scu().associate(listener.port, [(CTImageStorage, [context_syntax])]) as assoc:
        assert assoc.is_established
        status = Scu.send_raw(assoc, CTImageStorage, ds.SOPInstanceUID, context_syntax, raw)
        # The association goes on: the same dataset, rightly encoded, is stored.
        right = (
            Scu.send_raw(
                assoc,
                CTImageStorage,
                ds.SOPInstanceUID,
                context_syntax,
                encoded(ds, context_syntax),
            )
            if context_syntax != JPEGLossless
            else 0x0000
        )
    assert status == 0xC210
    assert right == 0x0000
    with listener.db.session() as session:
        count = len(list(session.scalars(select(Instance))))
    assert count == (0 if context_syntax == JPEGLossless else 1)
    assert listener.incoming() == []
    if count:
        dump = subprocess.run(
            [dcmtk("dcmdump"), str(spool_path(listener.spool, ds))], capture_output=True, text=True
        )
        assert dump.returncode == 0 and "E: " not in dump.stderr, dump.stderr


HOSTILE_AE = "EV\x1b[2JIL"  # an ESC sequence that clears a terminal


def associate_raw(port: int, calling: str, called: str = "IVCONTRAST") -> int:
    """A-ASSOCIATE-RQ with any calling AE bytes (pynetdicom's SCU would refuse them), then
    A-RELEASE-RQ; returns the PDU type of the answer (2: accepted, 3: rejected)."""

    def item(kind: int, body: bytes) -> bytes:
        return struct.pack(">BBH", kind, 0, len(body)) + body

    syntax = item(0x30, b"1.2.840.10008.1.1") + item(0x40, b"1.2.840.10008.1.2")
    body = (
        struct.pack(">HH", 1, 0)
        + called.encode().ljust(16)
        + calling.encode("latin-1").ljust(16)
        + bytes(32)
        + item(0x10, b"1.2.840.10008.3.1.1.1")
        + item(0x20, bytes([1, 0, 0, 0]) + syntax)
        + item(0x50, item(0x51, struct.pack(">I", 16384)))
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(struct.pack(">BBI", 1, 0, len(body)) + body)
        answer = sock.recv(1)
        if answer == b"\x02":
            sock.recv(65536)
            sock.sendall(struct.pack(">BBI", 5, 0, 4) + bytes(4))
            sock.recv(65536)
        return answer[0] if answer else 0


def test_list_from_set_and_peer_bytes_escaped_in_the_log(tmp_path: Path) -> None:
    # ivcontrast --set scp.allowed_calling_aes=A,B scp: the list is taken (it was refused),
    # and what peers choose (AE titles, UIDs in pydicom's warnings) reaches the log escaped.
    scp = ScpProcess(tmp_path / "node", processes=1)
    at = scp.command.index("scp")
    scp.command[at:at] = ["--set", "scp.allowed_calling_aes=ECHOSCU@127.0.0.1, TESTSCU"]
    with scp.start():
        assert echoscu(scp.port).returncode == 0
        assert echoscu(scp.port, calling="STRANGER").returncode != 0
        # pynetdicom refuses control characters in an AE title, and says so, quoting it.
        assert associate_raw(scp.port, HOSTILE_AE) in (3, 7)
        ds = dicom_factory.ct_image(rows=8, columns=8)
        ds.SOPInstanceUID = "1.2.3\x1b[31m"
        with Scu().associate(scp.port, [(CTImageStorage, [ExplicitVRLittleEndian])]) as assoc:
            raw = encoded(ds, ExplicitVRLittleEndian)
            status = Scu.send_raw(
                assoc, CTImageStorage, ds.SOPInstanceUID, ExplicitVRLittleEndian, raw
            )
        assert status == 0xC212
        scp.stop()
    log = scp.log_path.read_bytes()
    assert b"\x1b" not in log
    text = log.decode()
    assert "EV\\x1b[2JIL" in text  # the refused association's AE title, escaped
    assert "1.2.3\\x1b[31m" in text  # the refused instance's UID, escaped
    assert "STRANGER" in text and "not in the allow-list" in text
    # Warnings come as log records in the log's own format, never raw from the warnings module.
    assert "UserWarning" not in text and "warn_and_log" not in text


def test_a_failed_tls_handshake_is_one_line_without_a_traceback(
    make_listener: Callable[..., InProcessListener],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    node = make_listener(tls_cert=str(cert), tls_key=str(key))
    caplog.set_level(logging.INFO)
    for _ in range(3):  # plain DICOM (or a port scanner) on the TLS port
        with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
            sock.sendall(b"\x01\x00\x00\x00\x00\x44" + bytes(68))
            sock.settimeout(5)
            try:
                sock.recv(1024)
            except OSError:
                pass
    time.sleep(0.5)
    assert echoscu(node.port).returncode != 0  # still TLS only, and still answering
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert failures, "a failed handshake should be logged"
    assert all(r.exc_info is None for r in failures), [r.getMessage() for r in failures]
    assert len(failures) <= 3 + 1, [r.getMessage() for r in failures]


@pytest.mark.parametrize("pad", ["\x00", " "])
@pytest.mark.parametrize("field", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_a_uid_with_a_leading_nul_or_space_is_refused(
    listener: InProcessListener, pad: str, field: str
) -> None:
    # Trailing padding is DICOM's; a leading NUL or space makes another UID, not this one.
    ds = dicom_factory.ct_image(rows=8, columns=8)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.2.3", "1.2.3.4", "1.2.3.4.5"
    # pydicom strips a leading space when a UID is set: put the pad into the bytes.
    value = getattr(ds, field)
    setattr(ds, field, "X" + value)
    raw = encoded(ds, ExplicitVRLittleEndian).replace(
        ("X" + value).encode(), (pad + value).encode(), 1
    )
    with Scu().associate(listener.port, [(CTImageStorage, [ExplicitVRLittleEndian])]) as assoc:
        status = Scu.send_raw(assoc, CTImageStorage, "1.2.3.4.5", ExplicitVRLittleEndian, raw)
    assert status == 0xC212
    with listener.db.session() as session:
        assert list(session.scalars(select(Instance))) == []
    assert [p for p in Path(listener.spool).iterdir() if p.is_dir() and p.name[0] != "."] == []
