"""The read model: every question the CLI, the HTTP API, the dashboard and ``/metrics`` ask
the store, asked in one place so they all get the same answer.

- ``series``: series with their newest result (``ivcontrast series``, ``/api/series``, the
  series pages), and one series' instances, associations, jobs, write-backs and results.
- ``results``: the results query and its row shape (``ivcontrast results``,
  ``/api/results`` and its export).
- ``activity``: associations, jobs, write-back jobs (``ivcontrast writeback list``), audit
  events and workers.
- ``counts``: the summary counts (``/api/summary``, the overview page, ``/metrics``) and the
  running totals ``/metrics`` adds.

Each function takes an open session and returns rows or plain dataclasses; nothing here
writes. Use it as ``from ivcontrast.store import read`` and ``read.series_page(...)``.
"""

from ivcontrast.store.read.activity import (
    WritebackFilter,
    WritebackRow,
    associations_page,
    events_page,
    jobs_page,
    workers,
    writebacks_page,
)
from ivcontrast.store.read.counts import Histogram, Summary, Totals, summary, totals
from ivcontrast.store.read.results import (
    ResultQuery,
    ResultRow,
    find_results,
    newest_versions,
    results_page,
    results_select,
)
from ivcontrast.store.read.series import (
    InstanceStats,
    SeriesAssociation,
    SeriesFilter,
    SeriesRow,
    instance_stats,
    series_associations,
    series_by_uid,
    series_count,
    series_instances,
    series_jobs,
    series_page,
    series_results,
    series_writebacks,
)

__all__ = [
    "Histogram",
    "InstanceStats",
    "ResultQuery",
    "ResultRow",
    "SeriesAssociation",
    "SeriesFilter",
    "SeriesRow",
    "Summary",
    "Totals",
    "WritebackFilter",
    "WritebackRow",
    "associations_page",
    "events_page",
    "find_results",
    "instance_stats",
    "jobs_page",
    "newest_versions",
    "results_page",
    "results_select",
    "series_associations",
    "series_by_uid",
    "series_count",
    "series_instances",
    "series_jobs",
    "series_page",
    "series_results",
    "series_writebacks",
    "summary",
    "totals",
    "workers",
    "writebacks_page",
]
