"""``ivcontrast scp`` with one listener process, watched from outside: its pid, its
resident memory, whether it is still the same process, and what it left on disk.

For tests that attack the listener and must see a crash, a restart or memory growth that
an in-process listener would hide.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Self

from tests.support.scp_harness import ScpProcess

READY = r"listener \S+:(\d+) accepting on"


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert found, status
    return int(found.group(1)) / 1024


class ScpChild:
    """One listener process behind the supervisor, on a free loopback port.

    ``settings``: ``scp.<key>=<value>`` overrides. Its temporary directory is its own
    (``tmp``), so that a file written outside the spool is seen.
    """

    def __init__(self, data_dir: Path, **settings: object) -> None:
        self.data_dir = data_dir
        self.tmp = data_dir / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        env = {"TMPDIR": str(self.tmp), "IVCONTRAST_SCP_MIN_FREE_MB": "0"}
        env.update({f"IVCONTRAST_SCP_{k.upper()}": str(v) for k, v in settings.items()})
        self.process = ScpProcess(data_dir, processes=1, env=env)
        self.pid = 0

    def start(self) -> Self:
        self.process.start()
        self.pid = int(self.process.wait_for(READY, 60).group(1))
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.process.kill()

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def spool(self) -> Path:
        return self.data_dir / "spool"

    def rss(self) -> float:
        return rss_mib(self.pid)

    def alive(self) -> bool:
        """The same listener process still runs (the supervisor restarts a dead one)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        return stat.split(")")[-1].split()[0] != "Z"

    def stray_files(self) -> list[Path]:
        """Files the listener wrote outside its spool's finished instances and its store."""
        stray = [p for p in self.tmp.rglob("*") if p.is_file()]
        stray += [p for p in (self.spool / ".incoming").rglob("*") if p.is_file()]
        known = {self.spool, self.tmp}
        for path in self.data_dir.iterdir():
            if path in known or path.name.startswith(("ivcontrast.db", "scp-")):
                continue
            stray.append(path)
        return stray

    def wait_rss_settled(self, seconds: float = 0.5) -> float:
        time.sleep(seconds)
        return self.rss()
