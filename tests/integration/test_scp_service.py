"""``ivcontrast scp`` as a real service: several processes on one port, supervised.

Also the crash test: kill -9 of the whole listener in the middle of a storescu transfer,
then a restart. The helpers (ScpProcess, storescu parsing) live in tests/support/scp_harness.py
so that worker-side tests can reuse them.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from ivcontrast import cli
from ivcontrast.store.db import Database
from ivcontrast.store.models import Association, AssociationState, Instance, Series
from tests.support import dicom_factory
from tests.support.scp_harness import (
    ScpProcess,
    echoscu,
    kill_during_storescu,
    spooled_dataset,
    storescu,
)

pytestmark = pytest.mark.slow


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def listener_children(scp: ScpProcess) -> list[int]:
    """The listener processes (spawn also starts a resource tracker: not ours to count)."""
    assert scp.proc is not None
    return [
        pid
        for pid in children_of(scp.proc.pid)
        if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    ]


def test_scp_service_serves_and_stops_cleanly(tmp_path: Path) -> None:
    files = dicom_factory.write_files(
        dicom_factory.ct_series(12, rows=32, columns=32), tmp_path / "in"
    )
    with ScpProcess(tmp_path / "node", processes=2) as scp:
        assert scp.wait_for(scp.LISTENING).group(1, 3, 4) == ("127.0.0.1", "IVCONTRAST", "2")
        assert len(listener_children(scp)) == 2
        assert echoscu(scp.port).returncode == 0
        result = storescu(scp.port, files)
        assert result.returncode == 0 and len(result.succeeded) == 12, result.output
        assert scp.stop() == 0
    log = scp.log()
    assert "Traceback" not in log
    assert "Doe^Jane" not in log and "PID12345" not in log  # no patient data in logs
    db = Database(f"sqlite:///{tmp_path / 'node' / 'ivcontrast.db'}")
    with db.session() as session:
        states = [a.state for a in session.scalars(select(Association))]
        assert states == [AssociationState.RELEASED] * 2
        assert len(session.scalars(select(Instance)).all()) == 12
    db.dispose()


def test_a_listener_process_that_dies_is_restarted(tmp_path: Path) -> None:
    (path,) = dicom_factory.write_files([dicom_factory.ct_image(rows=8, columns=8)], tmp_path)
    with ScpProcess(tmp_path / "node", processes=2) as scp:
        victim, survivor = listener_children(scp)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "ready" in scp.log().split("exited with code -9")[-1]:
                break
            time.sleep(0.2)
        assert "exited with code -9; restarting" in scp.log()
        children = listener_children(scp)
        assert survivor in children and victim not in children and len(children) == 2
        for _ in range(4):  # whichever process takes them, all are served
            assert storescu(scp.port, [path]).returncode == 0
        assert scp.stop() == 0


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--data-dir", str(tmp_path), "scp", "--port", "70000"]) == 2
    assert "scp.port" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli.main(
            ["--data-dir", str(tmp_path), "scp", "--bind", "127.0.0.1", "--port", str(port)]
        )
    assert code == 1
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


def test_kill_9_in_the_middle_of_a_transfer_then_restart(tmp_path: Path) -> None:
    """Every instance that got Success is on disk and indexed after a crash and restart."""
    series = dicom_factory.ct_series(150, rows=128, columns=128)
    files = dicom_factory.write_files(series, tmp_path / "in")
    node = tmp_path / "node"
    scp = ScpProcess(node, processes=2)
    scp.start()
    acknowledged = kill_during_storescu(scp, files, after=40)

    restarted = ScpProcess(node, processes=2)
    restarted.start()
    try:
        spool = node / "spool"
        assert list((spool / ".incoming").iterdir()) == []  # no half-written file remains
        db = Database(f"sqlite:///{node / 'ivcontrast.db'}")
        with db.session() as session:
            rows = {i.sop_instance_uid: i for i in session.scalars(select(Instance))}
            states = {a.state for a in session.scalars(select(Association))}
        assert states == {AssociationState.ABORTED}
        by_path = {str(p): ds for p, ds in zip(files, series, strict=True)}
        for path in acknowledged:
            ds = by_path[str(path)]
            row = rows[ds.SOPInstanceUID]
            stored = spool / row.path
            body = spooled_dataset(stored)
            assert hashlib.sha256(body).hexdigest() == row.sha256
            assert dcmread(stored).SOPInstanceUID == ds.SOPInstanceUID
        # Whatever reached the spool is whole and indexed, acknowledged or not.
        on_disk = list(spool.glob("*/*/*.dcm"))
        assert len(on_disk) == len(rows)
        for stored in on_disk:
            assert dcmread(stored).PixelData  # complete files only

        # The sender tries again: the series ends up whole, each instance once.
        again = storescu(restarted.port, files)
        assert again.returncode == 0 and len(again.succeeded) == len(files), again.output
        with db.session() as session:
            (row,) = session.scalars(select(Series)).all()
            assert row.instance_count == len(files)
            assert len(session.scalars(select(Instance)).all()) == len(files)
        db.dispose()
        assert restarted.stop() == 0
    finally:
        if restarted.proc is not None and restarted.proc.poll() is None:
            restarted.kill()
