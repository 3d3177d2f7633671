"""The Alembic migrations and the SQLAlchemy models describe the same schema."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from ivcontrast.store.db import Database
from ivcontrast.store.models import Base


def test_migrations_match_models(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'schema.db'}")
    db.upgrade()
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert diff == [], f"models and migrations differ; write a migration: {diff}"


def test_upgrade_is_idempotent_and_enables_wal(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'wal.db'}")
    db.upgrade()
    db.upgrade()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert {"series", "instances", "jobs", "associations", "workers"} <= set(
        inspect(db.engine).get_table_names()
    )


def _upgrade(url: str) -> None:
    from ivcontrast.store.db import Database

    Database(url).upgrade()


def test_processes_that_start_at_once_migrate_one_after_the_other(tmp_path: Path) -> None:
    # A listener, a worker and the web app started together (systemd, compose) each upgrade
    # the schema; on SQLite the second used to fail with "database is locked".
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    for trial in range(3):
        url = f"sqlite:///{tmp_path / f's{trial}.db'}"
        processes = [spawn.Process(target=_upgrade, args=(url,)) for _ in range(3)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        assert [p.exitcode for p in processes] == [0, 0, 0]
