"""``ivcontrast db upgrade``: bring the database schema to the newest migration."""

from __future__ import annotations

import argparse

from ivcontrast.config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["upgrade"], help="upgrade: apply pending migrations")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ivcontrast.store.db import Database

    db = Database(settings.db_url)
    db.upgrade()
    db.dispose()
    print(f"database schema is current: {db.engine.url.render_as_string(hide_password=True)}")
    return 0
