"""The FastAPI application: JSON API, dashboard, thumbnails, ``/health`` and ``/metrics``.

Read-only over the store. The routers (``web.api`` and ``web.pages``, one per resource) find
the app's ``WebContext`` in ``app.state.context`` through the ``web.deps.Context``
dependency. The schema is at ``/openapi.json``; the interactive docs pages are off because
they load their scripts from a CDN, and this app fetches nothing from the internet.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles

from ivcontrast import __version__
from ivcontrast.config import Settings
from ivcontrast.store.db import Database
from ivcontrast.web import api, pages
from ivcontrast.web.auth import TokenAuth
from ivcontrast.web.context import WebContext

log = logging.getLogger(__name__)

DESCRIPTION = """Read-only view of an ivcontrast node: received series and their state,
contrast calls with per-slice evidence, associations, jobs and their failures, events.
Patient names and IDs are returned only when `web.show_patient_names` is set.
When `web.token` is set, send `Authorization: Bearer <token>` (``/health`` may be public)."""

UNAUTHORISED = {
    "description": "missing or wrong bearer token",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"detail": {"type": "string"}},
                "required": ["detail"],
            }
        }
    },
}
TOO_MANY_GUESSES = {
    **UNAUTHORISED,
    "description": "too many wrong tokens from this address in the last minute (see Retry-After)",
}


def static_dir() -> Path:
    return Path(str(resources.files("ivcontrast.web") / "static"))


def create_app(settings: Settings, db: Database) -> FastAPI:
    """The app over ``db``; the caller owns ``db`` (and disposes of it)."""
    ctx = WebContext(settings, db)
    app = FastAPI(
        title="ivcontrast",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    for router in [*api.routers(), *pages.routers()]:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    token = settings.web.token
    if token is not None:
        app.add_middleware(
            TokenAuth,
            token=token,
            public_health=settings.web.public_health,
            failures_per_minute=settings.web.login_failures_per_minute,
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            if token is not None:
                schema.setdefault("components", {})["securitySchemes"] = {
                    "bearer": {"type": "http", "scheme": "bearer"}
                }
                schema["security"] = [{"bearer": []}]
                if settings.web.public_health:
                    schema["paths"]["/health"]["get"]["security"] = []
                for operations in schema["paths"].values():
                    for operation in operations.values():
                        if operation.get("security") != []:
                            operation["responses"].setdefault("401", UNAUTHORISED)
                        # Any request with a bearer token may meet the guessing limit.
                        operation["responses"].setdefault("429", TOO_MANY_GUESSES)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.context = ctx
    return app
