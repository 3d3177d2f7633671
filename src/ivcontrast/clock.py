"""The clock the worker, its pipeline and the job queue read, passed in so tests can drive it.

``SystemClock`` is the real one. ``ManualClock`` stands still until a test ``advance``s it:
leases, backoffs and schedules are then tested by moving time, not by sleeping for it.

A clock has two faces, as the standard library does: ``now()`` (aware UTC, for times stored
in the database such as lease expiries) and ``monotonic()`` (seconds, for intervals within
one process such as "renew every third of a lease"). ``wait(event, seconds)`` is
``threading.Event.wait`` on that clock. Imports nothing from the project.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

# How often a ManualClock's waiter looks at its event (real seconds); advance() wakes it.
_MANUAL_POLL_SECONDS = 0.01


class Clock(Protocol):
    def now(self) -> datetime:
        """The wall-clock time, aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait until ``event`` is set or ``seconds`` have passed; True if it was set."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(seconds)


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that moves only when told to (thread-safe).

    It starts at the real time of its creation. Rows that the store stamps with the real
    time themselves (a job queued without ``available_at``) are in this clock's future
    until it is advanced past them: create the clock after them.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._monotonic = 0.0
        self._changed = threading.Condition()

    def now(self) -> datetime:
        with self._changed:
            return self._now

    def monotonic(self) -> float:
        with self._changed:
            return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move both faces on by ``seconds`` and wake the waiters whose time has come."""
        with self._changed:
            self._now += timedelta(seconds=seconds)
            self._monotonic += seconds
            self._changed.notify_all()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        with self._changed:
            deadline = self._monotonic + seconds
            while not event.is_set() and self._monotonic < deadline:
                self._changed.wait(_MANUAL_POLL_SECONDS)
        return event.is_set()
