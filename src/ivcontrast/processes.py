"""Process identity and liveness: who a listener or worker is, and whether it still runs.

A listener or worker names itself ``host:pid`` (a worker adds a random suffix, since a pid is
reused after a restart); a process that finds a neighbour's row on its own host asks
``pid_alive`` whether that neighbour still runs, to clean up after it at once rather than
after a lease or a timeout. Imports nothing from the project.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path


def hostname() -> str:
    return socket.gethostname()


def process_id(pid: int | None = None) -> str:
    """``host:pid`` of this process (or of ``pid`` on this host)."""
    return f"{hostname()}:{pid if pid is not None else os.getpid()}"


def unique_process_id() -> str:
    """``host:pid:random``: unique even when a restarted process gets an old pid back."""
    return f"{process_id()}:{uuid.uuid4().hex[:8]}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host.

    A zombie (exited, not yet reaped by its parent) does not run: it holds no lease and
    writes no file, so it counts as dead.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): the signal check is all we have
    # The state follows the command name, which may itself hold ')' or spaces.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
