"""The association server: the listening socket's options, one socket shared by several
listener processes, and the count of association slots.

``ListenerServer`` is pynetdicom's threaded association server with a large receive
buffer and TCP_NODELAY, a read timeout on every connection, TLS handshakes moved off the
accept loop, and optionally a listening socket (made by ``listening_socket``) that every
listener process accepts from, spreading associations by the load each process posts on
a shared board. Each accepted connection becomes an association through
``reactor.ListenerRequestHandler``; ``claim_slot`` counts the associations whose request
has arrived against ``scp.max_associations`` (a connection still in its handshake holds
no slot).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any, cast

from pynetdicom.transport import ThreadedAssociationServer

RECEIVE_BUFFER = 4 << 20  # lets a sender put a whole CT slice on the wire without waiting


class ListenerServer(ThreadedAssociationServer):
    """The association server: a large receive buffer, TCP_NODELAY, and optionally a
    listening socket shared with other listener processes.

    A shared socket is accepted from by every process that holds it; it is non-blocking
    so that a process that loses the race for a connection goes back to waiting instead
    of blocking in accept(). To spread associations over the processes, each one posts
    how many associations it serves on a shared ``load_board`` and leaves a new
    connection, for up to ``DEFER_MAX`` seconds, to a process that serves fewer. This
    spreads better than SO_REUSEPORT's hash of the peer's address (with 4 associations on
    2 processes that hash put 3 or 4 on one process in 2 of 3 trials), and costs nothing
    when every process is equally busy (one association per image, say).
    """

    daemon_threads = True
    # socketserver's default backlog of 5 drops the SYN of whoever connects just after a
    # burst of connections (a port scan, health checks): the sender retries a second later.
    request_queue_size = 128
    DEFER_MAX = 0.2
    NOT_ACCEPTING = 1 << 30  # a board value for a process that is not (yet) accepting

    def __init__(
        self,
        *args: Any,
        listen_socket: socket.socket | None = None,
        load_board: tuple[Any, int] | None = None,
        handshake_timeout: float | None = None,
        association_limit: int | None = None,
        **kwargs: Any,
    ) -> None:
        """``handshake_timeout``: seconds a connection has to deliver its A-ASSOCIATE-RQ;
        ``association_limit``: associations at once (None: pynetdicom's own count)."""
        self._shared = listen_socket
        self._board = load_board
        self.handshake_timeout = handshake_timeout
        self.association_limit = association_limit
        self._slots = 0
        self._slots_lock = threading.Lock()
        self._starting = 0  # accepted connections whose association thread is not up yet
        self._starting_lock = threading.Lock()
        super().__init__(*args, **kwargs)
        self.post_load()

    def claim_slot(self) -> bool:
        """Take an association slot; False when ``association_limit`` are taken."""
        with self._slots_lock:
            if self.association_limit is not None and self._slots >= self.association_limit:
                return False
            self._slots += 1
            return True

    def release_slot(self) -> None:
        with self._slots_lock:
            self._slots -= 1

    def busy(self) -> int:
        """Associations this process serves or is starting."""
        return self._starting + len(self.active_associations)

    def post_load(self) -> int:
        busy = self.busy()
        if self._board is not None:
            board, index = self._board
            board[index] = busy
        return busy

    def _idler_elsewhere(self, busy: int) -> bool:
        if self._board is None:
            return False
        board, index = self._board
        return any(board[i] < busy for i in range(len(board)) if i != index)

    def _handle_request_noblock(self) -> None:
        deadline = time.monotonic() + self.DEFER_MAX
        listening = cast(socket.socket, self.socket)
        while self._idler_elsewhere(self.post_load()) and time.monotonic() < deadline:
            try:
                ready, _, _ = select.select([listening], [], [], 0.002)
            except (OSError, ValueError):
                return
            if not ready:
                return  # an idler process took it
        super()._handle_request_noblock()  # type: ignore[misc]

    def service_actions(self) -> None:
        super().service_actions()
        self.post_load()  # associations that ended since the last accept

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._starting_lock:
            self._starting += 1
        self.post_load()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._started()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._started()  # the association thread (if any) is running by now

    def _started(self) -> None:
        with self._starting_lock:
            self._starting -= 1

    def server_bind(self) -> None:
        assert self.socket is not None
        if self._shared is not None:
            self.socket.close()
            self.socket = self._shared
            self.socket.setblocking(False)
            self.server_address = self.socket.getsockname()
            return
        # Before listen(), so that accepted sockets inherit it and the window scale is
        # negotiated for it.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        super().server_bind()

    def server_activate(self) -> None:
        if self._shared is None:
            super().server_activate()

    def server_close(self) -> None:
        if self._shared is None:
            super().server_close()
        else:
            # Never shutdown() a shared listening socket: that stops it for every process.
            self._shared.close()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client, address = self.socket.accept()
        # Small C-STORE responses must not wait for Nagle's algorithm.
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Accepted sockets block without end by default: a peer that stops in the middle
        # of a PDU would hold its thread (and its association) for as long as it likes.
        client.settimeout(self.ae.network_timeout)
        if self.ssl_context:
            # The handshake happens on the association's first read, in its own thread:
            # done here, one silent client would hold up every other connection.
            client = self.ssl_context.wrap_socket(
                client, server_side=True, do_handshake_on_connect=False
            )
        return client, address


def listening_socket(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening TCP socket for listener processes to share (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
