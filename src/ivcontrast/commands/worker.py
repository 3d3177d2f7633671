"""``ivcontrast worker``: the completion sweep and the job loop, without the listener."""

from __future__ import annotations

import argparse
import signal
import threading

from ivcontrast.config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--once",
        action="store_true",
        help="sweep once, run every job available now, then exit (for cron and tests)",
    )
    parser.add_argument(
        "--no-sweep",
        action="store_true",
        help="take jobs only; leave the completion sweep to other workers",
    )


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so loops end cleanly and release their work."""
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ivcontrast.store.db import Database
    from ivcontrast.worker.service import Worker, build_handlers

    db = Database(settings.db_url)
    db.upgrade()
    worker = Worker(settings, db, build_handlers(settings, db), sweep=not args.no_sweep)
    try:
        if args.once:
            worker.run_until_idle()
        else:
            worker.run_forever(stop_on_signals())
    finally:
        db.dispose()
    return 0
