"""Counts over the whole store: the summary (the API's ``/api/summary``, the dashboard's
overview, ``/metrics``) and the running totals only ``/metrics`` exports.

Each count is read from the rows at call time, so every process (and every host) that reads
the same database gives the same numbers. Grouped counts keep the order of their keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from ivcontrast.store.models import Association, Instance, Job, JobState, Result, Series, Writeback
from ivcontrast.store.read.results import newest_versions


@dataclass
class Summary:
    """Series by state; each series' newest result by label and by tag status; jobs by kind
    and state; instances stored; associations by state."""

    series_by_state: dict[str, int] = field(default_factory=dict)
    results_by_label: dict[str, int] = field(default_factory=dict)
    results_by_tag_status: dict[str, int] = field(default_factory=dict)
    jobs_by_kind_state: dict[tuple[str, str], int] = field(default_factory=dict)
    instances: int = 0
    associations_by_state: dict[str, int] = field(default_factory=dict)

    @property
    def associations(self) -> int:
        return sum(self.associations_by_state.values())


@dataclass(frozen=True)
class Histogram:
    buckets: list[tuple[float, int]]  # (upper bound, cumulative count)
    total: float
    count: int


@dataclass
class Totals:
    """What happened over the node's life (every result version, every attempt)."""

    instances_received: int = 0  # acknowledged with Success, re-sent ones included
    instances_failed: int = 0
    bytes_received: int = 0
    results_by_label_tag: dict[tuple[str, str], int] = field(default_factory=dict)
    classification_seconds: Histogram = field(default_factory=lambda: Histogram([], 0.0, 0))
    oldest_due_by_kind: dict[str, datetime] = field(default_factory=dict)  # pending jobs
    jobs_by_kind_state_outcome: dict[tuple[str, str, str | None], int] = field(default_factory=dict)
    writebacks_by_destination_outcome: dict[tuple[str, str | None], int] = field(
        default_factory=dict
    )


def summary(session: Session) -> Summary:
    """Counts for the dashboard, the API and the metrics (newest results only)."""
    out = Summary()
    for state, n in session.execute(
        select(Series.state, func.count()).group_by(Series.state).order_by(Series.state)
    ):
        out.series_by_state[state] = int(n)
    newest = newest_versions()
    latest = (
        select(Result.label, Result.tag_status, func.count())
        .join(
            newest,
            and_(newest.c.series_id == Result.series_id, newest.c.version == Result.series_version),
        )
        .group_by(Result.label, Result.tag_status)
        .order_by(Result.label, Result.tag_status)
    )
    for label, tag_status, n in session.execute(latest):
        out.results_by_label[label] = out.results_by_label.get(label, 0) + int(n)
        by_tag = out.results_by_tag_status
        by_tag[tag_status] = by_tag.get(tag_status, 0) + int(n)
    for kind, state, n in session.execute(
        select(Job.kind, Job.state, func.count())
        .group_by(Job.kind, Job.state)
        .order_by(Job.kind, Job.state)
    ):
        out.jobs_by_kind_state[(kind, state)] = int(n)
    out.instances = session.scalar(select(func.count(Instance.id))) or 0
    for state, n in session.execute(
        select(Association.state, func.count())
        .group_by(Association.state)
        .order_by(Association.state)
    ):
        out.associations_by_state[state] = int(n)
    return out


def totals(session: Session, latency_buckets: Sequence[float], now: datetime) -> Totals:
    """The running totals; ``latency_buckets`` bound the classification-time histogram and
    ``now`` decides which pending jobs are due."""
    out = Totals()
    received, failed, size = session.execute(
        select(
            func.coalesce(func.sum(Association.instances_received), 0),
            func.coalesce(func.sum(Association.instances_failed), 0),
            func.coalesce(func.sum(Association.bytes_received), 0),
        )
    ).one()
    out.instances_received, out.instances_failed = int(received), int(failed)
    out.bytes_received = int(size)
    for label, tag, n in session.execute(
        select(Result.label, Result.tag_status, func.count())
        .group_by(Result.label, Result.tag_status)
        .order_by(Result.label, Result.tag_status)
    ):
        out.results_by_label_tag[(label, tag)] = int(n)
    out.classification_seconds = _latency(session, latency_buckets)
    for kind, at in session.execute(
        select(Job.kind, func.min(Job.available_at))
        .where(Job.state == JobState.PENDING, Job.available_at <= now)
        .group_by(Job.kind)
        .order_by(Job.kind)
    ):
        if at is not None:
            out.oldest_due_by_kind[kind] = at
    for kind, state, outcome, n in session.execute(
        select(Job.kind, Job.state, Job.outcome, func.count())
        .group_by(Job.kind, Job.state, Job.outcome)
        .order_by(Job.kind, Job.state, Job.outcome)
    ):
        out.jobs_by_kind_state_outcome[(kind, state, outcome)] = int(n)
    for destination, outcome, n in session.execute(
        select(Writeback.destination, Writeback.outcome, func.count())
        .group_by(Writeback.destination, Writeback.outcome)
        .order_by(Writeback.destination, Writeback.outcome)
    ):
        out.writebacks_by_destination_outcome[(destination, outcome)] = int(n)
    return out


def _latency(session: Session, bounds: Sequence[float]) -> Histogram:
    """Every result's ``total_seconds`` (time from loading the series to its row)."""
    seconds = Result.total_seconds
    row = session.execute(
        select(
            func.count(seconds),
            func.coalesce(func.sum(seconds), 0.0),
            *[func.coalesce(func.sum(case((seconds <= b, 1), else_=0)), 0) for b in bounds],
        )
    ).one()
    count, total, *cumulative = row
    buckets = list(zip(bounds, map(int, cumulative), strict=True))
    return Histogram(buckets, float(total), int(count))
