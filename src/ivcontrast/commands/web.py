"""``ivcontrast web``: the HTTP API and dashboard only (no listener, no worker).

Prints the URL it serves on (useful with ``--port 0``); Ctrl-C or SIGTERM stops it after
open requests finish.
"""

from __future__ import annotations

import argparse
import logging

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
    from ivcontrast.store.db import Database
    from ivcontrast.web.server import bind, url_of, uvicorn_server, warn_if_exposed

    db = Database(settings.db_url)
    try:
        db.upgrade()
        try:
            sock = bind(settings.web.host, settings.web.port)
        except OSError as exc:
            raise CommandError(
                f"{settings.web.host}:{settings.web.port}: cannot listen: {exc.strerror or exc}"
            ) from None
        warn_if_exposed(settings)
        print(f"ivcontrast web: serving {url_of(sock)}/", flush=True)
        uvicorn_server(settings, db).run(sockets=[sock])
    finally:
        db.dispose()
    return 0
