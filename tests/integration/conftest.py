"""Fixtures for integration tests of the DICOM listener (helpers live in tests/support/scp_harness.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.support.scp_harness import InProcessListener


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[InProcessListener]:
    """A listener on a free loopback port, in this process, with its own store and spool."""
    with InProcessListener(tmp_path / "node") as node:
        yield node


@pytest.fixture
def make_listener(tmp_path: Path) -> Iterator[Callable[..., InProcessListener]]:
    """Start listeners with other ``scp`` settings: ``make_listener(min_free_mb=...)``."""
    with ExitStack() as stack:
        count = 0

        def make(**scp: Any) -> InProcessListener:
            nonlocal count
            count += 1
            return stack.enter_context(InProcessListener(tmp_path / f"node{count}", **scp))

        yield make
