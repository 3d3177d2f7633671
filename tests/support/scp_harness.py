"""Start, talk to and kill DICOM listeners in tests.

- :class:`InProcessListener`: one listener process's AE in this process (fast to start).
- :class:`ScpProcess`: ``ivcontrast scp`` as a subprocess in its own session, so that
  ``kill()`` (SIGKILL to the process group) takes every listener process down at once.
- :func:`storescu` / :func:`echoscu`: DCMTK's tools (never the pynetdicom apps of the same
  name in the virtualenv), with TCP_NODELAY=1; ``storescu`` parses which files got Success.
- :class:`Scu`: a pynetdicom SCU that records every status, and can send raw bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Self

import pytest
from pydicom.dataset import Dataset

from ivcontrast.config import Settings, load_settings
from ivcontrast.store.db import Database
from tests.support.node_process import NodeProcess, clean_env

AE_TITLE = "IVCONTRAST"
DCMTK_ENV = {"TCP_NODELAY": "1"}  # without it DCMTK stalls ~44 ms per image on loopback


def find_dcmtk(tool: str) -> str | None:
    """DCMTK's ``tool`` on PATH, skipping this virtualenv (pynetdicom installs namesakes)."""
    venv_bin = (Path(sys.prefix) / "bin").resolve()
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]:
        candidate = Path(folder) / tool
        if not folder or Path(folder).resolve() == venv_bin or not candidate.is_file():
            continue
        out = subprocess.run([candidate, "--version"], capture_output=True, text=True)
        if "dcmtk" in (out.stdout + out.stderr).lower():
            return str(candidate)
    return None


def dcmtk(tool: str) -> str:
    path = find_dcmtk(tool)
    if path is None:
        pytest.skip(f"DCMTK {tool} is not installed (Debian package 'dcmtk')")
    return path


def make_settings(data_dir: Path, **scp: Any) -> Settings:
    """Settings for a test listener: loopback, a free port, SQLite in ``data_dir``."""
    overrides: dict[str, Any] = {
        "data_dir": str(data_dir),
        "scp.bind_address": "127.0.0.1",
        "scp.port": 0,
        "scp.min_free_mb": 0,
    }
    overrides.update({f"scp.{key}": value for key, value in scp.items()})
    return load_settings(env={}, overrides=overrides)


class InProcessListener:
    """A migrated store, and a Listener serving on a free loopback port."""

    def __init__(self, data_dir: Path, **scp: Any) -> None:
        from ivcontrast.scp.listener import Listener

        self.settings = make_settings(data_dir, **scp)
        self.db = Database(self.settings.db_url)
        self.db.upgrade()
        self.listener = Listener(self.settings, self.db)
        self.spool = self.settings.spool_path

    def __enter__(self) -> InProcessListener:
        self.listener.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.stop(grace=2.0)
        self.db.dispose()

    @property
    def port(self) -> int:
        return self.listener.address[1]

    def incoming(self) -> list[str]:
        return sorted(p.name for p in (self.spool / ".incoming").iterdir())


class ScpProcess(NodeProcess):
    """``ivcontrast scp`` as a subprocess; the port is read from its start-up log line."""

    LISTENING = r"listening on (\S+):(\d+) as (\S+) \((\d+) processes\)"

    def __init__(
        self, data_dir: Path, *args: str, processes: int = 2, env: dict[str, str] | None = None
    ) -> None:
        command = [sys.executable, "-m", "ivcontrast", "--data-dir", str(data_dir), "scp"]
        command += ["--bind", "127.0.0.1", "--port", "0", "--processes", str(processes), *args]
        super().__init__(command, clean_env(env), data_dir / f"scp-{time.monotonic_ns()}.log")
        self.data_dir = data_dir
        self.port = 0

    def start(self, timeout: float = 90.0) -> Self:
        super().start()
        try:
            self.port = int(self.wait_for(self.LISTENING, timeout).group(2))
        except RuntimeError:
            self.kill()
            raise
        return self


@dataclass
class StorescuResult:
    returncode: int
    output: str
    succeeded: list[Path] = field(default_factory=list)  # files answered with Success


def parse_storescu(output: str) -> list[Path]:
    """Files that ``storescu -v`` reports as sent and answered with Success."""
    succeeded: list[Path] = []
    current: Path | None = None
    for line in output.splitlines():
        if line.startswith("I: Sending file: "):
            current = Path(line[len("I: Sending file: ") :].strip())
        elif line.startswith("I: Received Store Response (Success)") and current is not None:
            succeeded.append(current)
            current = None
    return succeeded


def storescu_command(
    port: int,
    files: Sequence[Path],
    called: str = AE_TITLE,
    calling: str = "STORESCU",
    extra: Sequence[str] = (),
) -> list[str]:
    return [
        dcmtk("storescu"),
        "-v",
        "-nh",  # go on after a failure status
        *extra,
        "-aet",
        calling,
        "-aec",
        called,
        "127.0.0.1",
        str(port),
        *map(str, files),
    ]


def storescu(
    port: int,
    files: Sequence[Path],
    called: str = AE_TITLE,
    calling: str = "STORESCU",
    timeout: float = 120.0,
    extra: Sequence[str] = (),
) -> StorescuResult:
    """Send ``files`` on one association; ``extra``: more storescu options (e.g. ``-xr``)."""
    out = subprocess.run(
        storescu_command(port, files, called, calling, extra),
        env={**os.environ, **DCMTK_ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = out.stdout + out.stderr
    return StorescuResult(out.returncode, output, parse_storescu(output))


def kill_during_storescu(scp: ScpProcess, files: Sequence[Path], after: int) -> list[Path]:
    """Send ``files`` with storescu and SIGKILL every listener process once ``after`` of
    them got Success (a crash in the middle of a transfer). Returns the files that got
    Success; raises if the transfer ended before the kill landed."""
    import threading

    sender = subprocess.Popen(
        storescu_command(scp.port, files),
        env={**os.environ, **DCMTK_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    enough = threading.Event()

    def read() -> None:
        assert sender.stdout is not None
        for line in sender.stdout:
            lines.append(line)
            if sum("Store Response (Success)" in x for x in lines) >= after:
                enough.set()
        enough.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    enough.wait(120)
    scp.kill()
    sender.wait(60)
    reader.join(10)
    acknowledged = parse_storescu("".join(lines))
    if not after <= len(acknowledged) < len(files):
        raise AssertionError(f"the kill did not land mid-transfer ({len(acknowledged)} sent)")
    return acknowledged


def echoscu(
    port: int, called: str = AE_TITLE, calling: str = "ECHOSCU"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dcmtk("echoscu"), "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
        env={**os.environ, **DCMTK_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )


class Scu:
    """A pynetdicom SCU for tests: associate, send datasets or raw bytes, record statuses."""

    def __init__(self, ae_title: str = "TESTSCU") -> None:
        from pynetdicom import AE

        self.ae = AE(ae_title)
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = 30

    @contextmanager
    def associate(
        self, port: int, contexts: Sequence[tuple[str, Sequence[str]]], called: str = AE_TITLE
    ) -> Iterator[Any]:
        """An association with ``contexts`` (abstract syntax, transfer syntaxes)."""
        self.ae.requested_contexts = []
        for abstract, syntaxes in contexts:
            self.ae.add_requested_context(abstract, list(syntaxes))
        assoc = self.ae.associate("127.0.0.1", port, ae_title=called)
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def send(self, port: int, datasets: Sequence[Dataset], called: str = AE_TITLE) -> list[int]:
        """Send each dataset (in its file meta's transfer syntax) on one association."""
        contexts: dict[str, set[str]] = {}
        for ds in datasets:
            contexts.setdefault(ds.SOPClassUID, set()).add(ds.file_meta.TransferSyntaxUID)
        with self.associate(port, [(k, sorted(v)) for k, v in contexts.items()], called) as assoc:
            assert assoc.is_established, "association was not accepted"
            return [int(assoc.send_c_store(ds).Status) for ds in datasets]

    @staticmethod
    def send_raw(
        assoc: Any, sop_class: str, sop_instance: str, transfer_syntax: str, raw: bytes
    ) -> int:
        """C-STORE of already encoded dataset bytes (which may be malformed)."""
        from pynetdicom.dimse_primitives import C_STORE

        context = assoc._get_valid_context(sop_class, transfer_syntax, "scu")
        req = C_STORE()
        req.MessageID = 1
        req.AffectedSOPClassUID = sop_class
        req.AffectedSOPInstanceUID = sop_instance
        req.Priority = 2
        req.DataSet = BytesIO(raw)
        # As Association.send_c_store does: pause the reactor while we wait for the reply.
        assoc._reactor_checkpoint.clear()
        while not assoc._is_paused:
            time.sleep(0.0001)
        try:
            assoc.dimse.send_msg(req, context.context_id)
            _, rsp = assoc.dimse.get_msg(block=True)
        finally:
            assoc._reactor_checkpoint.set()
        return int(rsp.Status)


def encoded(ds: Dataset, transfer_syntax: str) -> bytes:
    """The dataset bytes a pynetdicom SCU puts on the wire for ``transfer_syntax``."""
    from pydicom.uid import UID
    from pynetdicom.dsutils import encode

    ts = UID(transfer_syntax)
    raw = encode(ds, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
    assert raw is not None
    return raw


def spooled_dataset(path: Path) -> bytes:
    """The dataset bytes of a spool file (after the preamble and the file meta group)."""
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM"
    return raw[144 + int.from_bytes(raw[140:144], "little") :]


def spool_path(spool: Path, ds: Dataset) -> Path:
    return spool / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
