"""Hostile or careless peers over loopback (issue 14): re-sent instances racing each other,
a dataset encoded in another transfer syntax than its presentation context's, list settings
given with ``--set``, and peer bytes in the log."""

from __future__ import annotations

import copy
import hashlib
import subprocess
import threading
import time
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
    Scu,
    dcmtk,
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
    # A slow store (a busy database) widens the window between the file and its row.
    record = ingest.record_instance

    def slow_record(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.01)
        return record(*args, **kwargs)

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
