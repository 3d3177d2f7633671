"""Read-only HTTP API, dashboard, ``/health`` and ``/metrics`` over the store.

``create_app(settings, db)`` builds the FastAPI app; ``WebServer(settings, db)`` serves it on
a background thread (``start()``/``stop()``), as ``ivcontrast serve`` does.
"""

from ivcontrast.web.app import create_app
from ivcontrast.web.server import WebServer

__all__ = ["WebServer", "create_app"]
