"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ivcontrast.store.db import Database
from tests.support import pg

REPO = Path(__file__).resolve().parents[1]
REALCT = REPO.parent / "shared" / "realct"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty SQLite store."""
    database = Database(f"sqlite:///{tmp_path / 'ivcontrast.db'}")
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for the whole session (skipped where PostgreSQL is not installed)."""
    if pg.find_bin() is None:
        pytest.skip("PostgreSQL is not installed (Debian package 'postgresql')")
    with pg.postgres_server() as url:
        yield url


# The PostgreSQL half starts a server for the session: slow, so `-m "not slow"` runs SQLite only.
POSTGRES = pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.slow])


@pytest.fixture(params=["sqlite", POSTGRES])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty store on each backend: the same suite runs on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ivcontrast.db'}"
    else:
        url = pg.create_database(request.getfixturevalue("postgres_url"))
    database = Database(url)
    database.upgrade()
    yield database
    database.dispose()
