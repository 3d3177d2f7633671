"""Alembic environment: run migrations on the engine the caller passes in.

``ivcontrast db upgrade`` and every process that opens the store call this through
``ivcontrast.store.db.upgrade``. On PostgreSQL an advisory lock keeps several hosts
that start at once from migrating together; on SQLite the write lock, taken at once, does.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ArgumentError

from ivcontrast.store.models import Base

MIGRATION_LOCK = 7_307_301  # any constant; shared by every ivcontrast process

config = context.config
engine = config.attributes.get("engine")
if not engine:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise ArgumentError("no engine passed in and no sqlalchemy.url configured")
    engine = create_engine(url)

# On SQLite the migration takes the write lock when it begins (BEGIN IMMEDIATE, see
# store.db): a listener, a worker and the web app starting at once then wait for each other
# (busy_timeout) instead of the second one failing with "database is locked" when its read
# of alembic_version turns into a write.
if engine.dialect.name == "sqlite":
    engine = engine.execution_options(write=True)

with engine.connect() as connection:
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
        connection.commit()
    try:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        if postgres:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            connection.commit()
