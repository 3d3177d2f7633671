"""``ivcontrast send`` against DCMTK's storescp (a real listener started as a
subprocess on a free loopback port) and against a pynetdicom SCP that fails some files."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import RLELossless

from ivcontrast.cli import main
from ivcontrast.synth import SeriesSpec, write_series
from ivcontrast.synth.sender import Sender, contexts_for, scan


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"storescp exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def start_storescp(out: Path, *options: str) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("storescp")
    assert exe, "storescp not found: install dcmtk"
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dict(os.environ, TCP_NODELAY="1")
    proc = subprocess.Popen(
        [exe, "-aet", "STORESCP", "-od", str(out), *options, str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(port, proc)
    return proc, port


@pytest.fixture(autouse=True)
def _no_stale_log_handlers() -> Iterator[None]:
    """main() points logging at the stderr pytest swaps per test; drop that handler after
    each test so threads of the next test do not write to a closed stream."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler:
            root.removeHandler(handler)


@pytest.fixture
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small series (one chest, one neck) in one folder tree."""
    root = tmp_path_factory.mktemp("series")
    write_series(SeriesSpec(seed=1, region="chest", matrix=64, slices=8), root / "a")
    write_series(SeriesSpec(seed=2, region="headneck", matrix=64, slices=7), root / "b")
    return root


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    out = tmp_path / "received"
    proc, port = start_storescp(out)
    yield port, out
    proc.terminate()
    proc.wait(timeout=10)


def test_send_parallel_associations_to_storescp(
    series: Path, storescp: tuple[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    port, out = storescp
    rc = main(["send", str(series), "--port", str(port), "--aec", "STORESCP", "-j", "3"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "sent 15/15 images" in printed and "images/s" in printed
    assert len(list(out.iterdir())) == 15


def test_unreadable_files_are_reported_and_the_rest_sent(
    series: Path, storescp: tuple[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    port, out = storescp
    (series / "a" / "notes.txt").write_text("not DICOM")
    (series / "b" / "CT99999.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    rc = main(["send", str(series), "--port", str(port), "--aec", "STORESCP", "-j", "2"])
    printed = capsys.readouterr().out
    assert rc == 1
    assert "sent 15/16 images" in printed
    assert "left out: 1 files in the folders that are not DICOM" in printed
    assert "failed: 1" in printed and "CT99999.dcm" in printed and "notes.txt" not in printed
    assert len(list(out.iterdir())) == 15
    # A file named on the command line is always tried, and reported when it is not DICOM.
    rc = main(["send", str(series / "a" / "notes.txt"), "--port", str(port), "--aec", "STORESCP"])
    printed = capsys.readouterr().out
    assert rc == 1 and "notes.txt" in printed and "not a readable DICOM file" in printed


def test_unaccepted_transfer_syntax_is_a_failure(
    tmp_path: Path, storescp: tuple[int, Path]
) -> None:
    """storescp without +xa accepts no RLE: those files fail, the plain ones go through."""
    port, _out = storescp
    write_series(SeriesSpec(seed=3, matrix=48, slices=2, transfer_syntax="rle"), tmp_path / "rle")
    write_series(SeriesSpec(seed=4, matrix=48, slices=2), tmp_path / "plain")
    report = Sender("127.0.0.1", port, called_ae="STORESCP", associations=2).send(
        [tmp_path / "rle", tmp_path / "plain"]
    )
    assert report.sent == 2
    assert len(report.failures) == 2
    assert all("rle" in f.path and "presentation context" in f.reason for f in report.failures)
    assert all(f.reason.endswith(RLELossless) for f in report.failures)


def test_compressed_files_are_sent_when_accepted(tmp_path: Path) -> None:
    write_series(SeriesSpec(seed=3, matrix=48, slices=3, transfer_syntax="rle"), tmp_path / "rle")
    items, failures = scan(sorted((tmp_path / "rle").iterdir()))
    assert not failures
    assert contexts_for(items) == [("1.2.840.10008.5.1.4.1.1.2", [RLELossless])]
    proc, port = start_storescp(tmp_path / "rx", "+xa")
    try:
        report = Sender("127.0.0.1", port, called_ae="STORESCP", associations=2).send(
            [tmp_path / "rle"]
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert report.ok and report.sent == 3
    assert len(list((tmp_path / "rx").iterdir())) == 3


@pytest.mark.slow
def test_aborted_associations_fail_every_file(series: Path, tmp_path: Path) -> None:
    proc, port = start_storescp(tmp_path / "rx", "--abort-after")
    try:
        report = Sender("127.0.0.1", port, called_ae="STORESCP", associations=2, timeout=2).send(
            [series / "a"]
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert report.sent == 0
    assert len(report.failures) == 8
    assert not report.ok


def test_nobody_listening(series: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "send",
            str(series / "a"),
            "--port",
            str(free_port()),
            "--aec",
            "X",
            "-j",
            "2",
            "--timeout",
            "3",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 1
    assert "sent 0/8 images" in printed and "failed: 8" in printed


def test_failure_statuses_are_reported(series: Path) -> None:
    """A pynetdicom SCP that answers 0xA700 (out of resources) for even instance numbers."""
    from pynetdicom import AE, evt
    from pynetdicom.presentation import AllStoragePresentationContexts

    stored: list[int] = []

    def handle(event: evt.Event) -> int:
        number = int(event.dataset.InstanceNumber)
        if number % 2 == 0:
            return 0xA700
        stored.append(number)
        return 0x0000

    ae = AE(ae_title="FUSSY")
    ae.supported_contexts = AllStoragePresentationContexts
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle)]
    )
    try:
        report = Sender("127.0.0.1", port, called_ae="FUSSY", associations=2).send([series / "a"])
    finally:
        server.shutdown()
    assert report.sent == 4 and sorted(stored) == [1, 3, 5, 7]
    assert {f.status for f in report.failures} == {0xA700}
    assert len(report.failures) == 4


def test_uncompressed_files_are_converted_to_what_the_peer_takes(series: Path) -> None:
    """A peer that takes CT only in implicit VR still gets our explicit-VR files."""
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE, evt

    items, _ = scan(sorted((series / "a").iterdir()))
    ct = "1.2.840.10008.5.1.4.1.1.2"
    assert sorted(contexts_for(items)) == sorted(
        [(ct, [ExplicitVRLittleEndian]), (ct, [ImplicitVRLittleEndian])]
    )
    received: list[str] = []

    def handle(event: evt.Event) -> int:
        received.append(event.context.transfer_syntax)
        return 0x0000

    ae = AE(ae_title="OLDPACS")
    ae.add_supported_context(ct, ImplicitVRLittleEndian)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle)]
    )
    try:
        report = Sender("127.0.0.1", port, called_ae="OLDPACS").send([series / "a"])
    finally:
        server.shutdown()
    assert report.ok and report.sent == 8
    assert set(received) == {ImplicitVRLittleEndian}


def test_send_as_a_subprocess(series: Path, storescp: tuple[int, Path]) -> None:
    port, out = storescp
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ivcontrast",
            "send",
            str(series / "b"),
            "--port",
            str(port),
            "--aec",
            "STORESCP",
            "-j",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sent 7/7 images" in proc.stdout
    assert len(list(out.iterdir())) == 7
