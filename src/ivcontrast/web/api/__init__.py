"""The read-only JSON API under ``/api``, the thumbnails, ``/health`` and ``/metrics``: one
router per resource, each with the strict query check (unknown or repeated parameters are
errors) and the app's context as a dependency.

- ``summary``: ``/api/summary``
- ``series``: ``/api/series``, ``/api/series/{uid}``, ``/series/{uid}/thumbnails/{i}.png``
- ``results``: ``/api/results`` and ``/api/results/export``
- ``activity``: ``/api/associations``, ``/api/jobs``, ``/api/events``, ``/api/workers``
- ``operations``: ``/health`` and ``/metrics``
"""

from __future__ import annotations

from fastapi import APIRouter

from ivcontrast.web.api import activity, operations, results, series, summary


def routers() -> list[APIRouter]:
    """In the order of the OpenAPI schema's paths."""
    return [summary.router, series.router, results.router, activity.router, operations.router]
