"""``ivcontrast web``: the HTTP API and dashboard only (no listener, no worker).

Prints the URL it serves on (useful with ``--port 0``); SIGTERM or Ctrl-C stops it after
open requests finish, with exit status 0.
"""

from __future__ import annotations

import argparse
import logging
import signal

from ivcontrast.commands import CommandError
from ivcontrast.config import Settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", dest="web.host", default=None, help="address to bind (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", dest="web.port", type=int, default=None, help="TCP port (default 8080; 0 = any)"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ivcontrast.commands.worker import stop_on_signals
    from ivcontrast.store.db import Database
    from ivcontrast.web.server import WebServer

    db = Database(settings.db_url)
    # Restored on the way out, for callers of main() that outlive the command (tests).
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        db.upgrade()
        stop = stop_on_signals()
        server = WebServer(settings, db)
        try:
            url = server.start()
        except OSError as exc:
            raise CommandError(
                f"{settings.web.host}:{settings.web.port}: cannot listen: {exc.strerror or exc}"
            ) from None
        print(f"ivcontrast web: serving {url}/", flush=True)
        try:
            while not stop.wait(1.0):
                pass
        finally:
            server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        db.dispose()
    return 0
