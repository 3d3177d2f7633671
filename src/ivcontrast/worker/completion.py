"""When is a series complete? A pure function of times and association state.

No DICOM sender says "this series is done". A series is complete when no instance has
arrived for ``quiet_seconds``, or sooner when every association that delivered it has been
released normally and ``settle_seconds`` have passed since the last instance. An aborted
association, or one still open, gives no such hint: the sender may retry or still be
sending, so only the quiet period applies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ivcontrast.store.models import AssociationState


@dataclass(frozen=True)
class DeliveringAssociation:
    """What completion needs to know of an association that delivered instances."""

    state: str
    ended_at: datetime | None


@dataclass(frozen=True)
class CompletionRule:
    quiet_seconds: float
    settle_seconds: float


def completion_reason(
    now: datetime,
    last_received_at: datetime,
    associations: Iterable[DeliveringAssociation],
    rule: CompletionRule,
) -> str | None:
    """Why the series is complete at ``now`` ('quiet' or 'released'), or None if it is not."""
    idle = now - last_received_at
    if idle >= timedelta(seconds=rule.quiet_seconds):
        return "quiet"
    delivered = list(associations)
    if (
        delivered
        and all(a.state == AssociationState.RELEASED and a.ended_at is not None for a in delivered)
        and idle >= timedelta(seconds=rule.settle_seconds)
    ):
        return "released"
    return None
