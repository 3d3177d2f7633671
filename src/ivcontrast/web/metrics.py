"""``/metrics`` in the Prometheus text format, computed from the store at scrape time.

Nothing is counted in this process's memory: listeners and workers in other processes (or
on other hosts) write rows, and every scrape reads the same totals whichever web process
answers it. The numbers are the store's read model (``read.summary``, ``read.totals``,
``read.workers``); this module only names and formats them.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable, Mapping
from datetime import datetime

from ivcontrast import __version__
from ivcontrast.config import Settings
from ivcontrast.store import read
from ivcontrast.store.db import Database
from ivcontrast.store.models import Worker, utcnow
from ivcontrast.vocabulary import JobKind, Label
from ivcontrast.web.health import existing_parent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
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


def render(settings: Settings, db: Database, now: datetime | None = None) -> str:
    """The whole exposition, read in one session."""
    now = now or utcnow()
    with db.session() as session:
        summary = read.summary(session)
        totals = read.totals(session, LATENCY_BUCKETS, now)
        workers = read.workers(session)
    out = Exposition()
    out.family(
        "ivcontrast_info", "gauge", "Version of this process.", [({"version": __version__}, 1)]
    )
    _traffic(out, summary, totals)
    _results(out, summary, totals)
    _queue(out, summary, totals, now)
    _workers(out, workers, now)
    usage = shutil.disk_usage(existing_parent(settings.spool_path))
    out.family(
        "ivcontrast_spool_free_bytes", "gauge", "Free space where the spool is.", [({}, usage.free)]
    )
    return out.text()


def _traffic(out: Exposition, summary: read.Summary, totals: read.Totals) -> None:
    out.family(
        "ivcontrast_instances_received_total",
        "counter",
        "Instances acknowledged with Success over all associations (re-sent ones included).",
        [({}, totals.instances_received)],
    )
    out.family(
        "ivcontrast_instances_failed_total",
        "counter",
        "C-STORE requests answered with a failure status.",
        [({}, totals.instances_failed)],
    )
    out.family(
        "ivcontrast_bytes_received_total",
        "counter",
        "Bytes of instances received.",
        [({}, totals.bytes_received)],
    )
    out.family(
        "ivcontrast_instances_stored",
        "gauge",
        "Distinct instances in the spool index.",
        [({}, summary.instances)],
    )
    out.family(
        "ivcontrast_associations",
        "gauge",
        "Associations by state.",
        [({"state": state}, n) for state, n in summary.associations_by_state.items()],
    )


def _results(out: Exposition, summary: read.Summary, totals: read.Totals) -> None:
    out.family(
        "ivcontrast_series",
        "gauge",
        "Series by state.",
        [({"state": state}, n) for state, n in summary.series_by_state.items()],
    )
    out.family(
        "ivcontrast_results_total",
        "counter",
        "Contrast calls (every series version) by label and by what the DICOM tag said.",
        [
            ({"label": label, "tag_status": tag}, n)
            for (label, tag), n in totals.results_by_label_tag.items()
        ],
    )
    # Every label, zero included, so an alert on a growing review queue has a series to watch.
    newest = {str(label): 0 for label in Label} | summary.results_by_label
    out.family(
        "ivcontrast_current_results",
        "gauge",
        "Each series' newest result by label (review: series waiting for a person to decide).",
        [({"label": label}, n) for label, n in newest.items()],
    )
    latency = totals.classification_seconds
    out.histogram(
        "ivcontrast_classification_seconds",
        "Time from loading a complete series to its result row.",
        latency.buckets,
        latency.total,
        latency.count,
    )


def _queue(out: Exposition, summary: read.Summary, totals: read.Totals, now: datetime) -> None:
    out.family(
        "ivcontrast_jobs",
        "gauge",
        "Jobs by kind and state (pending and leased ones are the queue).",
        [
            ({"kind": kind, "state": state}, n)
            for (kind, state), n in summary.jobs_by_kind_state.items()
        ],
    )
    out.family(
        "ivcontrast_queue_oldest_pending_seconds",
        "gauge",
        "Age of the oldest pending job that is due, by kind.",
        [
            ({"kind": kind}, max(0.0, (now - at).total_seconds()))
            for kind, at in totals.oldest_due_by_kind.items()
        ],
    )
    out.family(
        "ivcontrast_writeback_jobs",
        "gauge",
        "Write-back jobs by state and outcome.",
        [
            ({"state": state, "outcome": outcome or ""}, n)
            for (kind, state, outcome), n in totals.jobs_by_kind_state_outcome.items()
            if kind == JobKind.WRITEBACK
        ],
    )
    out.family(
        "ivcontrast_writebacks",
        "gauge",
        "Write-backs by destination and outcome of the last attempt (none yet: pending).",
        [
            ({"destination": dest, "outcome": outcome or "pending"}, n)
            for (dest, outcome), n in totals.writebacks_by_destination_outcome.items()
        ],
    )


def _workers(out: Exposition, workers: list[Worker], now: datetime) -> None:
    out.family(
        "ivcontrast_worker_heartbeat_age_seconds",
        "gauge",
        "Seconds since each running worker's last heartbeat.",
        [({"worker": w.id}, max(0.0, (now - w.heartbeat_at).total_seconds())) for w in workers],
    )
