"""One ivcontrast process under test: started in its own session, logged to a file, waited
for by a log line, stopped with SIGTERM or killed with SIGKILL with everything it started.

Shared by the listener, end-to-end, deployment, multi-host and Orthanc forwarding tests.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without IVCONTRAST_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVCONTRAST_")}
    env.update(extra or {})
    return env


class NodeProcess:
    """One ivcontrast process (``command`` is the argv), in its own session.

    Its output goes to ``log_path``; ``wait_for`` waits for a line matching a pattern.
    """

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
    ) -> None:
        self.command = list(command)
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match[str]:
        """The first match of ``pattern`` in the log; raises if the process exits first."""
        assert self.proc is not None
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = regex.search(self.log())
            if found:
                return found
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{' '.join(self.command[-2:])} exited ({self.proc.returncode}) "
                    f"before {pattern!r}:\n{self.log()[-4000:]}"
                )
            time.sleep(0.1)
        raise RuntimeError(f"no {pattern!r} within {timeout:.0f} s:\n{self.log()[-4000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, as systemd or docker stop do; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL to the process and everything it started (a crash, a pulled plug)."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # its children die a moment later
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
