from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ivcontrast.worker.completion import CompletionRule, DeliveringAssociation, completion_reason

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
RULE = CompletionRule(quiet_seconds=60, settle_seconds=5)


def released(at: datetime) -> DeliveringAssociation:
    return DeliveringAssociation(state="released", ended_at=at)


OPEN = DeliveringAssociation(state="open", ended_at=None)
ABORTED = DeliveringAssociation(state="aborted", ended_at=T0)


@pytest.mark.parametrize(
    ("idle", "associations", "expected"),
    [
        (0, [], None),
        (59.9, [], None),
        (60, [], "quiet"),
        (61, [OPEN], "quiet"),  # an open association does not hold a series back forever
        (4.9, [released(T0)], None),  # released, but not settled yet
        (5, [released(T0)], "released"),
        (5, [released(T0), released(T0)], "released"),
        (5, [released(T0), OPEN], None),  # one sender still connected
        (10, [ABORTED], None),  # an aborted transfer may be retried: wait for quiet
        (60, [ABORTED], "quiet"),
    ],
)
def test_completion_reason(
    idle: float, associations: list[DeliveringAssociation], expected: str | None
) -> None:
    now = T0 + timedelta(seconds=idle)
    assert completion_reason(now, T0, associations, RULE) == expected


def test_zero_settle_completes_as_soon_as_released() -> None:
    rule = CompletionRule(quiet_seconds=60, settle_seconds=0)
    assert completion_reason(T0, T0, [released(T0)], rule) == "released"


def test_late_instance_restarts_the_clock() -> None:
    last = T0 + timedelta(seconds=50)
    now = T0 + timedelta(seconds=70)
    assert completion_reason(now, last, [], RULE) is None
    assert completion_reason(now + timedelta(seconds=40), last, [], RULE) == "quiet"
