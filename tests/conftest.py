"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ivcontrast.store.db import Database

REPO = Path(__file__).resolve().parents[1]
REALCT = REPO.parent / "shared" / "realct"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty store."""
    database = Database(f"sqlite:///{tmp_path / 'ivcontrast.db'}")
    database.upgrade()
    yield database
    database.dispose()
