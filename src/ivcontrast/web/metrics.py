"""``/metrics`` in the Prometheus text format, computed from the store at scrape time.

Nothing is counted in this process's memory: listeners and workers in other processes (or
on other hosts) write rows, and every scrape reads the same totals whichever web process
answers it.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ivcontrast import __version__
from ivcontrast.config import Settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import (
    Association,
    Instance,
    Job,
    JobState,
    Result,
    Series,
    Worker,
    Writeback,
    utcnow,
)
from ivcontrast.web.health import existing_parent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WRITEBACK_KIND = "writeback"
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

Labels = Mapping[str, str]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Exposition:
    """Builds the text: one HELP and TYPE line per family, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float]]
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.sample(name, labels, value)

    def sample(self, name: str, labels: Labels, value: float) -> None:
        if labels:
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {_number(value)}")
        else:
            self.lines.append(f"{name} {_number(value)}")

    def histogram(
        self,
        name: str,
        help_text: str,
        buckets: Iterable[tuple[float, int]],
        total: float,
        count: int,
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} histogram")
        for bound, cumulative in buckets:
            self.sample(f"{name}_bucket", {"le": _number(bound)}, cumulative)
        self.sample(f"{name}_bucket", {"le": "+Inf"}, count)
        self.sample(f"{name}_sum", {}, total)
        self.sample(f"{name}_count", {}, count)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _latency(session: Session) -> tuple[list[tuple[float, int]], float, int]:
    seconds = Result.total_seconds
    row = session.execute(
        select(
            func.count(seconds),
            func.coalesce(func.sum(seconds), 0.0),
            *[
                func.coalesce(func.sum(case((seconds <= b, 1), else_=0)), 0)
                for b in LATENCY_BUCKETS
            ],
        )
    ).one()
    count, total, *cumulative = row
    return list(zip(LATENCY_BUCKETS, map(int, cumulative), strict=True)), float(total), int(count)


def render(settings: Settings, db: Database, now: datetime | None = None) -> str:
    """The whole exposition, read in one session."""
    now = now or utcnow()
    out = Exposition()
    out.family(
        "ivcontrast_info", "gauge", "Version of this process.", [({"version": __version__}, 1)]
    )
    with db.session() as session:
        received, failed, size = session.execute(
            select(
                func.coalesce(func.sum(Association.instances_received), 0),
                func.coalesce(func.sum(Association.instances_failed), 0),
                func.coalesce(func.sum(Association.bytes_received), 0),
            )
        ).one()
        out.family(
            "ivcontrast_instances_received_total",
            "counter",
            "Instances acknowledged with Success over all associations (re-sent ones included).",
            [({}, received)],
        )
        out.family(
            "ivcontrast_instances_failed_total",
            "counter",
            "C-STORE requests answered with a failure status.",
            [({}, failed)],
        )
        out.family(
            "ivcontrast_bytes_received_total",
            "counter",
            "Bytes of instances received.",
            [({}, size)],
        )
        stored = session.scalar(select(func.count(Instance.id))) or 0
        out.family(
            "ivcontrast_instances_stored",
            "gauge",
            "Distinct instances in the spool index.",
            [({}, stored)],
        )
        out.family(
            "ivcontrast_associations",
            "gauge",
            "Associations by state.",
            [
                ({"state": state}, n)
                for state, n in session.execute(
                    select(Association.state, func.count())
                    .group_by(Association.state)
                    .order_by(Association.state)
                )
            ],
        )
        out.family(
            "ivcontrast_series",
            "gauge",
            "Series by state.",
            [
                ({"state": state}, n)
                for state, n in session.execute(
                    select(Series.state, func.count()).group_by(Series.state).order_by(Series.state)
                )
            ],
        )
        out.family(
            "ivcontrast_results_total",
            "counter",
            "Contrast calls (every series version) by label and by what the DICOM tag said.",
            [
                ({"label": label, "tag_status": tag}, n)
                for label, tag, n in session.execute(
                    select(Result.label, Result.tag_status, func.count())
                    .group_by(Result.label, Result.tag_status)
                    .order_by(Result.label, Result.tag_status)
                )
            ],
        )
        buckets, total, count = _latency(session)
        out.histogram(
            "ivcontrast_classification_seconds",
            "Time from loading a complete series to its result row.",
            buckets,
            total,
            count,
        )
        out.family(
            "ivcontrast_jobs",
            "gauge",
            "Jobs by kind and state (pending and leased ones are the queue).",
            [
                ({"kind": kind, "state": state}, n)
                for kind, state, n in session.execute(
                    select(Job.kind, Job.state, func.count())
                    .group_by(Job.kind, Job.state)
                    .order_by(Job.kind, Job.state)
                )
            ],
        )
        oldest = session.execute(
            select(Job.kind, func.min(Job.available_at))
            .where(Job.state == JobState.PENDING, Job.available_at <= now)
            .group_by(Job.kind)
            .order_by(Job.kind)
        ).all()
        out.family(
            "ivcontrast_queue_oldest_pending_seconds",
            "gauge",
            "Age of the oldest pending job that is due, by kind.",
            [
                ({"kind": kind}, max(0.0, (now - at).total_seconds()))
                for kind, at in oldest
                if at is not None
            ],
        )
        out.family(
            "ivcontrast_writeback_jobs",
            "gauge",
            "Write-back jobs by state and outcome.",
            [
                ({"state": state, "outcome": outcome or ""}, n)
                for state, outcome, n in session.execute(
                    select(Job.state, Job.outcome, func.count())
                    .where(Job.kind == WRITEBACK_KIND)
                    .group_by(Job.state, Job.outcome)
                    .order_by(Job.state, Job.outcome)
                )
            ],
        )
        out.family(
            "ivcontrast_writebacks",
            "gauge",
            "Write-backs by destination and outcome of the last attempt (none yet: pending).",
            [
                ({"destination": dest, "outcome": outcome or "pending"}, n)
                for dest, outcome, n in session.execute(
                    select(Writeback.destination, Writeback.outcome, func.count())
                    .group_by(Writeback.destination, Writeback.outcome)
                    .order_by(Writeback.destination, Writeback.outcome)
                )
            ],
        )
        workers = session.scalars(
            select(Worker).where(Worker.stopped_at.is_(None)).order_by(Worker.id)
        ).all()
        out.family(
            "ivcontrast_worker_heartbeat_age_seconds",
            "gauge",
            "Seconds since each running worker's last heartbeat.",
            [({"worker": w.id}, max(0.0, (now - w.heartbeat_at).total_seconds())) for w in workers],
        )
    usage = shutil.disk_usage(existing_parent(settings.spool_path))
    out.family(
        "ivcontrast_spool_free_bytes", "gauge", "Free space where the spool is.", [({}, usage.free)]
    )
    return out.text()
