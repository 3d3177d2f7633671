"""Run ivcontrast's commands as the deployment does: separate processes, settings from a
TOML file and ``IVCONTRAST_*`` variables, stopped with SIGTERM or killed with SIGKILL.

Used by the deployment, multi-host and Orthanc forwarding tests.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ivcontrast(*args: str) -> list[str]:
    """The argv of the installed ``ivcontrast`` console script."""
    return [str(VENV_BIN / "ivcontrast"), *args]
