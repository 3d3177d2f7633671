"""Process identity and liveness (ivcontrast.processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ivcontrast.processes import hostname, pid_alive, process_id, unique_process_id


def test_identity_names_host_and_pid() -> None:
    assert process_id() == f"{hostname()}:{os.getpid()}"
    assert process_id(42) == f"{hostname()}:42"
    first, second = unique_process_id(), unique_process_id()
    assert first != second and first.startswith(process_id() + ":")


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0)
    assert not pid_alive(-1)
    assert not pid_alive(999999999)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_zombie_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 30
        # Waits for a real process to exit; it stays a zombie until we reap it.
        while stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        assert not pid_alive(child.pid)
    finally:
        child.wait()
