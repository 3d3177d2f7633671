"""Several listener processes on one port, supervised: what ``ivcontrast scp`` and
``ivcontrast serve`` run.

:class:`ListenerService` prepares the store and the spool once (migrations, leftovers of
dead processes, reconcile), opens the listening socket, then spawns N
``listener.Listener`` processes that all accept from it (pynetdicom's handler threads are
CPU-bound in Python, so one process uses about one core), restarts a child that dies,
and stops them all. Why one shared socket rather than SO_REUSEPORT: see
``acceptor.ListenerServer``.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ivcontrast.config import Settings
from ivcontrast.scp.ae import tls_context
from ivcontrast.scp.listener import NOT_ACCEPTING, STOP_GRACE_SECONDS, Listener, listener_id
from ivcontrast.store import ingest
from ivcontrast.store.db import Database

log = logging.getLogger(__name__)

RESTART_BACKOFF_MAX = 30.0


def _child_main(
    settings: Settings,
    listen_socket: socket.socket,
    board: Any,
    index: int,
    messages: Any,
    configure_logging: Callable[[Settings], None] | None,
) -> None:
    """A listener process: serve until SIGTERM/SIGINT or until the parent is gone."""
    if configure_logging is not None:
        configure_logging(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()
    listener = Listener(settings, listen_socket=listen_socket, load_board=(board, index))
    try:
        listener.start()
    except Exception as exc:
        log.exception("listener process %d cannot start", index)
        messages.put(("failed", index, os.getpid(), f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    messages.put(("ready", index, os.getpid(), ""))
    while not stop.wait(1.0):
        if os.getppid() != parent:
            log.warning("listener process %d: supervisor is gone, stopping", index)
            break
    listener.stop()


@dataclass
class _Child:
    index: int
    process: Any
    started_at: float = field(default_factory=time.monotonic)
    failures: int = 0


class ListenerService:
    """N listener processes on one port, supervised.

    ``start()`` returns once every process listens; a child that dies is restarted (with
    back-off); ``stop()`` stops them all. ``configure_logging`` (a module-level function,
    so it can be pickled) is called in each child before anything logs.
    """

    def __init__(
        self,
        settings: Settings,
        configure_logging: Callable[[Settings], None] | None = None,
    ) -> None:
        self.settings = settings
        self.configure_logging = configure_logging
        self.processes = settings.scp.processes or os.cpu_count() or 1
        self._ctx = multiprocessing.get_context("spawn")
        self._messages: Any = None
        self._children: dict[int, _Child] = {}
        self._socket: socket.socket | None = None
        self._port: int | None = None
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("listener service not started")
        return self._port

    def start(self, timeout: float = 120.0) -> None:
        from ivcontrast.processes import pid_alive
        from ivcontrast.scp.spool import Spool, reconcile

        scp = self.settings.scp
        db = Database(self.settings.db_url)
        try:
            db.upgrade()
            spool = Spool(self.settings.spool_path, scp.min_free_mb)
            spool.prepare()
            spool.clean_incoming(pid_alive)
            orphaned = ingest.abort_orphaned_associations(db, spool.host, pid_alive)
            if orphaned:
                log.warning("marked %d associations of dead listeners aborted", len(orphaned))
            reconcile(spool, db)
        finally:
            db.dispose()
        tls_context(scp)  # fail here, once, on a bad certificate
        from ivcontrast.scp.acceptor import listening_socket

        self._socket = listening_socket(scp.bind_address, scp.port)
        self._port = int(self._socket.getsockname()[1])
        self._messages = self._ctx.Queue()
        self._board = self._ctx.Array("i", [NOT_ACCEPTING] * self.processes, lock=False)
        for index in range(self.processes):
            self._spawn(index)
        try:
            self._wait_ready(set(range(self.processes)), timeout)
        except BaseException:
            self.stop()
            raise
        self._supervisor = threading.Thread(
            target=self._supervise, name="scp-supervisor", daemon=True
        )
        self._supervisor.start()
        log.info(
            "listening on %s:%d as %s (%d processes)",
            scp.bind_address,
            self._port,
            scp.ae_title,
            self.processes,
        )

    def _spawn(self, index: int) -> None:
        self._board[index] = NOT_ACCEPTING  # until the new process posts its own load
        process = self._ctx.Process(
            target=_child_main,
            args=(
                self.settings,
                self._socket,
                self._board,
                index,
                self._messages,
                self.configure_logging,
            ),
            name=f"scp-{index}",
            daemon=False,
        )
        process.start()
        previous = self._children.get(index)
        self._children[index] = _Child(
            index, process, failures=previous.failures if previous else 0
        )

    def _wait_ready(self, pending: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(
                    f"listener processes {sorted(pending)} did not start in {timeout:.0f} s"
                )
            try:
                kind, index, pid, detail = self._messages.get(timeout=min(left, 0.5))
            except queue.Empty:
                dead = [i for i in pending if not self._children[i].process.is_alive()]
                if dead:
                    raise RuntimeError(
                        f"listener process {dead[0]} exited during start-up"
                    ) from None
                continue
            if kind == "failed":
                raise RuntimeError(
                    f"listener process {index} (pid {pid}) failed to start: {detail}"
                )
            pending.discard(index)

    def _supervise(self) -> None:
        """Restart children that die; drain their start-up messages."""
        while not self._stopping.is_set():
            sentinels = {c.process.sentinel: c for c in self._children.values()}
            multiprocessing.connection.wait(list(sentinels), timeout=0.5)
            self._drain_messages()
            if self._stopping.is_set():
                return
            for child in list(self._children.values()):
                if child.process.is_alive():
                    continue
                code = child.process.exitcode
                pid = child.process.pid
                lived = time.monotonic() - child.started_at
                child.failures = 0 if lived > 60 else child.failures + 1
                delay = min(RESTART_BACKOFF_MAX, 0.5 * 2 ** max(0, child.failures - 1))
                log.error(
                    "listener process %d (pid %s) exited with code %s; restarting in %.1f s",
                    child.index,
                    pid,
                    code,
                    delay,
                )
                self._board[child.index] = NOT_ACCEPTING
                self._abort_rows_of(pid, f"listener process exited with code {code}")
                if self._stopping.wait(delay):
                    return
                with self._lock:
                    if not self._stopping.is_set():
                        self._spawn(child.index)

    def _drain_messages(self) -> None:
        while True:
            try:
                kind, index, pid, detail = self._messages.get_nowait()
            except queue.Empty:
                return
            if kind == "failed":
                log.error("listener process %d (pid %d) failed to start: %s", index, pid, detail)
            else:
                log.info("listener process %d (pid %d) ready", index, pid)

    def _abort_rows_of(self, pid: int | None, reason: str) -> None:
        if pid is None:
            return
        db = Database(self.settings.db_url)
        try:
            ingest.abort_listener_associations(db, listener_id(pid), reason)
        except Exception:
            log.exception("cannot mark the associations of listener pid %s aborted", pid)
        finally:
            db.dispose()

    def stop(self, timeout: float = STOP_GRACE_SECONDS + 10.0) -> None:
        """Stop every listener process (SIGTERM, then SIGKILL after ``timeout``)."""
        self._stopping.set()
        with self._lock:
            children = list(self._children.values())
        for child in children:
            if child.process.is_alive():
                child.process.terminate()
        deadline = time.monotonic() + timeout
        for child in children:
            child.process.join(max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                log.warning("listener process %d did not stop; killing it", child.index)
                child.process.kill()
                child.process.join(5)
                self._abort_rows_of(child.process.pid, "listener process killed at stop")
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._messages is not None:
            self._messages.close()
            self._messages = None
        log.info("listener stopped")

    def join(self) -> None:
        """Wait until stop() is called (from a signal handler or another thread)."""
        self._stopping.wait()

    def run_forever(self) -> None:
        """Start, serve until SIGTERM or SIGINT, then stop. Call from the main thread."""
        stop = threading.Event()
        previous = {
            signum: signal.signal(signum, lambda *_: stop.set())
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self.start()
            try:
                stop.wait()
            finally:
                self.stop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
