"""Serving the app with uvicorn: in the foreground (``ivcontrast web``) or on a thread
(``ivcontrast serve`` runs it beside the listener and the worker).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time

import uvicorn

from ivcontrast.config import Settings
from ivcontrast.store.db import Database
from ivcontrast.web.app import create_app

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port); OSError if taken."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_exposed(settings: Settings) -> None:
    web = settings.web
    if not is_loopback(web.host) and web.token is None:
        log.warning(
            "web app bound to %s without a token: anyone who can reach it sees the results "
            "(set web.token)",
            web.host,
        )


def uvicorn_server(settings: Settings, db: Database) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings, db),
        log_config=None,  # logging is configured by the entry point, not by uvicorn
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


class WebServer:
    """The app on a background thread: ``start()`` returns once it accepts connections.

    >>> server = WebServer(settings, db); server.start(); ...; server.stop()
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.host = settings.web.host if host is None else host
        self.port = settings.web.port if port is None else port
        self.url: str | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 15.0) -> str:
        """Bind, serve on a thread, wait until it is up; returns the URL. OSError if taken."""
        if self._thread is not None:
            raise RuntimeError("web server already started")
        sock = bind(self.host, self.port)
        self.url = url_of(sock)
        warn_if_exposed(self.settings)
        server = uvicorn_server(self.settings, self.db)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="ivcontrast-web", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(timeout=5)
                sock.close()
                self._server = self._thread = None
                raise RuntimeError(f"web server on {self.url} did not start")
            time.sleep(0.02)
        # From here on uvicorn owns the socket and closes it at shutdown.
        log.info("web app serving on %s", self.url)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """Finish open requests (up to a few seconds) and stop; safe to call twice."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("web server thread did not stop within %.0f s", timeout)
        else:
            log.info("web app stopped")
        self._server = self._thread = None

    def __enter__(self) -> WebServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
