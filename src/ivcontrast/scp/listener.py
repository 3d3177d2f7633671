"""One process's DICOM listener: the AE and its association server, in background threads.

:class:`Listener` is what a listener process runs (``scp.supervisor`` starts N of them on
one port) and what tests start in-process. It binds ``scp.bind_address:scp.port`` itself,
or accepts from a listening socket shared with other processes and posts its load on a
shared board (see ``acceptor.ListenerServer``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from ivcontrast.config import Settings
from ivcontrast.scp.ae import build_ae, tls_context
from ivcontrast.store import ingest
from ivcontrast.store.db import Database

log = logging.getLogger(__name__)

NOT_ACCEPTING = 1 << 30  # as acceptor.ListenerServer.NOT_ACCEPTING, without importing it here
STOP_GRACE_SECONDS = 5.0  # how long a stopping listener lets open associations finish
UNCOUNTED = 1 << 30  # pynetdicom's association limit, when ListenerServer counts instead


def listener_id(pid: int | None = None) -> str:
    return f"{socket.gethostname()}:{pid if pid is not None else os.getpid()}"


class Listener:
    """One process's listener: the AE and its association server, in background threads."""

    def __init__(
        self,
        settings: Settings,
        db: Database | None = None,
        listen_socket: socket.socket | None = None,
        load_board: tuple[Any, int] | None = None,
    ) -> None:
        """``listen_socket``: a listening socket shared with other processes (else we bind
        ``scp.bind_address:scp.port`` ourselves); ``load_board``: (shared array, our slot)
        on which the processes post their load (see ``acceptor.ListenerServer``)."""
        self.settings = settings
        self._listen_socket = listen_socket
        self._load_board = load_board
        self._own_db = db is None
        self.db = db if db is not None else Database(settings.db_url)
        self.id = listener_id()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._handlers: Any = None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("listener not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind and serve; returns once the port is listening."""
        from pynetdicom import _config as pynetdicom_config

        from ivcontrast.scp.acceptor import ListenerServer
        from ivcontrast.scp.access import AccessPolicy
        from ivcontrast.scp.handlers import ListenerHandlers
        from ivcontrast.scp.reactor import FAST_REACTOR, ListenerRequestHandler
        from ivcontrast.scp.spool import Spool

        scp = self.settings.scp
        spool = Spool(self.settings.spool_path, scp.min_free_mb)
        spool.prepare()
        # A row that names our own pid was left by a dead process that had this pid.
        ingest.abort_listener_associations(
            self.db, self.id, "listener process ended without closing the association"
        )
        self._handlers = ListenerHandlers(self.db, spool, AccessPolicy.from_settings(scp), self.id)
        if not FAST_REACTOR:
            log.warning("pynetdicom is not 3.0.x: using its polling reactor (slower)")
        if not logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG):
            # pynetdicom's standard handlers format every PDU for a logger that would
            # drop the text anyway; without them the C-STORE response takes a fast path.
            pynetdicom_config.LOG_HANDLER_LEVEL = "none"
        ae = build_ae(scp)
        limit: int | None = None
        if FAST_REACTOR:
            # The fast reactor counts associations past their request (ListenerServer
            # .claim_slot); pynetdicom's count includes connections still in their handshake.
            limit, ae.maximum_associations = scp.max_associations, UNCOUNTED
        self._server = ae.make_server(
            (scp.bind_address, scp.port),
            evt_handlers=self._handlers.bindings(),
            ssl_context=tls_context(scp),
            server_class=ListenerServer,
            request_handler=ListenerRequestHandler,
            listen_socket=self._listen_socket,
            load_board=self._load_board,
            handshake_timeout=scp.handshake_timeout,
            association_limit=limit,
        )
        ae._servers.append(self._server)  # as AE.start_server does, for AE.shutdown()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="scp-accept", daemon=True
        )
        self._thread.start()
        host, port = self.address
        log.info("listener %s accepting on %s:%d as %s", self.id, host, port, scp.ae_title)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop accepting, let open associations finish for ``grace`` s, abort the rest."""
        if self._server is None:
            return
        server, self._server = self._server, None
        if self._load_board is not None:
            board, index = self._load_board
            board[index] = NOT_ACCEPTING
        server.shutdown()
        deadline = time.monotonic() + grace
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in server.active_associations:
            assoc.abort()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            ingest.abort_listener_associations(self.db, self.id, "listener stopped")
        except Exception:
            log.exception("cannot mark this listener's open associations aborted")
        if self._own_db:
            self.db.dispose()
        log.info("listener %s stopped", self.id)
