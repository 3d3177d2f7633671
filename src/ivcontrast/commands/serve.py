"""``ivcontrast serve``: the whole node on one host: listener, worker and web app.

The listener runs as its own processes (several share the port); the worker loop runs in
this process's main thread and the web app in a thread beside it. SIGTERM or SIGINT stops
all three cleanly: the listener stops accepting, the worker finishes or releases its job.
"""

from __future__ import annotations

import argparse
import logging

from ivcontrast.commands.worker import stop_on_signals
from ivcontrast.config import Settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", dest="scp.port", type=int, default=None, help="DICOM port")
    parser.add_argument("--aet", dest="scp.ae_title", default=None, help="our AE title")
    parser.add_argument(
        "--processes", dest="scp.processes", type=int, default=None, help="listener processes"
    )
    parser.add_argument(
        "--web-port", dest="web.port", type=int, default=None, help="HTTP port of the web app"
    )
    parser.add_argument(
        "--no-web", dest="web.enabled", action="store_const", const=False, default=None
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ivcontrast.logs import configure_logging
    from ivcontrast.scp.supervisor import ListenerService
    from ivcontrast.store.db import Database
    from ivcontrast.worker.service import Worker, build_handlers

    db = Database(settings.db_url)
    db.upgrade()
    stop = stop_on_signals()
    # The listener processes log like this one (as under `ivcontrast scp`).
    listener = ListenerService(settings, configure_logging=configure_logging)
    listener.start()
    web = None
    try:
        if settings.web.enabled:
            from ivcontrast.web.server import WebServer

            web = WebServer(settings, db)
            web.start()
        Worker(settings, db, build_handlers(settings, db)).run_forever(stop)
    finally:
        if web is not None:
            web.stop()
        listener.stop()
        db.dispose()
    return 0
