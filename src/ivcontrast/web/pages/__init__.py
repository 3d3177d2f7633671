"""The dashboard: server-rendered pages (Jinja2), a little vanilla JS, inline SVG; one router
per page group, none of them in the OpenAPI schema.

- ``render``: the templates, their filters, and ``Page``, which renders a template with
  what every page shows (a dependency)
- ``overview``: ``/``
- ``series``: ``/series`` and ``/series/{uid}``
- ``activity``: ``/jobs`` and ``/associations``
- ``login``: ``/login`` and ``/logout`` (when ``web.token`` is set)

Everything the pages need is served by this app; nothing is fetched from the internet.
"""

from __future__ import annotations

from fastapi import APIRouter

from ivcontrast.web.pages import activity, login, overview, series


def routers() -> list[APIRouter]:
    return [overview.router, series.router, activity.router, login.router]
