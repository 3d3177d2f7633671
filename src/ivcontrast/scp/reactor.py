"""Event-driven reactors for pynetdicom's acceptor, which read every PDU within bounds.

pynetdicom 3.0 runs two polling loops per association: the DUL thread and the association
thread each sleep 1 ms whenever they find nothing to do. A C-STORE exchange crosses
between them several times (PDUs in, the complete message to the handler, the response
back to the socket), so on a single association most of the time per image is spent
asleep: a listener that only writes the received bytes tops out near 160 images/s.

Here the two threads wait on what they are waiting for instead: the DUL thread in
``select()`` on the peer's socket and a wake-up pipe (written when the association thread
queues a primitive to send), the association thread on an event set whenever a message or
an ACSE primitive is queued for it. The state machine, the PDU codecs and the service
classes are pynetdicom's own; the two loops, the PDU read and the acceptor's handshake
are replaced:

- A PDU's length is checked against what we accept in the current state
  (``protocol.pdu_limit``: ``scp.max_pdu`` for P-DATA-TF, 256 KiB for the rest) before
  anything is allocated for it; a longer one gets an A-ABORT (service-provider,
  invalid-PDU-parameter value) and the connection is closed. Bodies are read into a
  buffer that grows with the bytes that arrive, never with what a header claims.
- A connection has ``scp.handshake_timeout`` seconds to deliver its A-ASSOCIATE-RQ; one
  that closes, resets or stays silent is let go at once or at that deadline. It holds no
  association slot meanwhile: ``scp.max_associations`` counts only associations whose
  request has arrived (``acceptor.ListenerServer.claim_slot``), not pynetdicom's count
  of every connection's thread.
- The A-ASSOCIATE-RQ and every P-DATA fragment and DIMSE message are checked
  (``protocol``, ``dimse``): what the standard says to reject or abort is rejected or
  aborted, never left unanswered.

These classes override private parts of pynetdicom, so they are used only with the 3.0
series they were written against; with any other version the listener falls back to
pynetdicom's own classes (correct, only slower) and says so in the log. That fallback
reads PDUs 4 KiB at a time (so a claimed length costs nothing until the bytes arrive), and
waits ``scp.handshake_timeout`` (in place of ``scp.acse_timeout``) for a request, but
counts connections still in their handshake against ``scp.max_associations`` until then,
answers oversize PDUs by closing the connection without an A-ABORT, and does not apply
the checks of ``protocol``. The association server that accepts the connections (socket
options, a socket shared by several processes, the slot count) is
``acceptor.ListenerServer``.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import socket
import ssl
import struct
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import pynetdicom
from pynetdicom import evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.fsm import InvalidEventError
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, A_P_ABORT
from pynetdicom.transport import AssociationSocket, RequestHandler

from ivcontrast.scp import protocol
from ivcontrast.scp.dimse import FastDIMSE, ServeStoresInline, WakeQueue, _p_data
from ivcontrast.scp.dimse import encode_c_store_rsp as encode_c_store_rsp

if TYPE_CHECKING:
    from ivcontrast.scp.acceptor import ListenerServer

log = logging.getLogger(__name__)

FAST_REACTOR = pynetdicom.__version__.startswith("3.0.")
IDLE_WAIT = 0.05  # seconds; bounds how late the timers (ARTIM, network timeout) are checked
READ_CHUNK = 1 << 20  # a PDU body's buffer grows by at most this much per read
DRAIN_CHUNK = 1 << 16  # what an aborted connection's leftover bytes are read (and dropped) by


class FastDUL(DULServiceProvider):
    """pynetdicom's DUL provider with a loop that blocks in select() instead of sleeping,
    and a PDU read that checks each PDU's length before reading it.

    ``handshake_deadline``: the monotonic time by which the A-ASSOCIATE-RQ must be in.
    """

    def __init__(self, assoc: Association, handshake_deadline: float | None = None) -> None:
        super().__init__(assoc)
        self._wake_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.to_provider_queue = WakeQueue(self.wake)
        self.handshake_deadline = handshake_deadline
        self.ended = threading.Event()  # the state machine is back in Sta1: no connection
        self._refused = False  # we sent an A-ABORT of our own: drop what still comes

    def wake(self) -> None:
        # The lock keeps a late wake-up from writing to a descriptor number the closed pipe
        # has already handed back to the process (it could be a spool file by then).
        with self._wake_lock:
            if self._wake_w >= 0:
                try:
                    os.write(self._wake_w, b"\0")
                except BlockingIOError:
                    pass  # the pipe is full of wake-ups already

    def kill_dul(self) -> None:
        self._kill_thread = True
        self.wake()

    def stop_dul(self) -> bool:
        if self.state_machine.current_state != "Sta1":
            return False
        self._kill_thread = True
        self.wake()
        while self.is_alive():
            time.sleep(0.0005)
        return True

    def run_reactor(self) -> None:
        try:
            self._reactor()
        finally:
            with self._wake_lock:
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_r = self._wake_w = -1

    def _reactor(self) -> None:
        self._idle_timer.start()
        machine = self.state_machine
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
            if self._kill_thread:
                return
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception as exc:
                self._abort_hard(exc)
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                self._wait(IDLE_WAIT)
                continue
            try:
                machine.do_action(event)
            except Exception as exc:
                # An event the state machine has no transition for, or an action that
                # failed: pynetdicom would end this thread and leave the peer waiting.
                self._abort_hard(exc)
                return
            if self._refused and machine.current_state not in ("Sta1", "Sta13"):
                machine.transition("Sta13")  # refused inside an action (DT-2) that said Sta6
            if machine.current_state == "Sta1":
                self.ended.set()

    def _is_transport_event(self) -> bool:
        if not self.event_queue.empty():
            return False  # the state a PDU is read in is the one every earlier event made
        if self._refused and self.state_machine.current_state == "Sta13":
            return self._drain()
        return super()._is_transport_event()

    def _read_pdu_data(self) -> None:
        """Read one PDU: its header, a check of its type and length, then its body.

        A P-DATA-TF during data transfer goes straight to the DIMSE layer: pynetdicom
        decodes every PDU into objects, queues an event, and runs the state machine, whose
        only action for a P-DATA-TF in Sta6 is to hand its PDVs to DIMSE and stay in Sta6.
        A CT slice is several such PDUs; doing just that, without copies or queues, saves
        a good share of the listener's CPU. Any other PDU, any other state, pending
        events, or bound PDU/transition handlers: pynetdicom's decoding and state machine.
        """
        sock = cast(FastSocket, self.socket)
        state = self.state_machine.current_state
        sock.deadline = self.handshake_deadline if state == "Sta2" else None
        try:
            header = sock.recv(6)
            if not header:
                self._lost(None)
                return
            if len(header) < 6:
                raise ConnectionError("connection closed in a PDU header")
            pdu_type, _, length = struct.unpack(">BBL", header)
            if pdu_type not in protocol.PDU_TYPES:
                self.refuse(protocol.UNRECOGNIZED_PDU, f"unknown PDU type 0x{pdu_type:02X}")
                return
            max_pdu = self.assoc.acceptor.maximum_length or 0
            limit = protocol.pdu_limit(pdu_type, state, max_pdu)
            if length > limit:
                self.refuse(
                    protocol.INVALID_PARAMETER,
                    f"a PDU of type 0x{pdu_type:02X} claims {length} bytes, over the "
                    f"{limit} accepted in {state}",
                )
                return
            body = sock.recv(length)
            if len(body) != length:
                raise ConnectionError(f"connection closed after {len(body)} of {length} bytes")
        except OSError as exc:
            self._lost(exc)
            return
        finally:
            sock.deadline = None
        if pdu_type == protocol.P_DATA_TF and self._p_data_fast_path():
            primitive = _p_data(body)
            if primitive is None:
                self.refuse(protocol.INVALID_PARAMETER, "malformed PDV items in a P-DATA-TF")
                return
            self.assoc.dimse.receive_primitive(primitive)
            return
        self._decode(header, body)

    def _decode(self, header: bytes | bytearray, body: bytearray) -> None:
        """Decode a PDU and queue its event, as pynetdicom does; a malformed one is refused."""
        bytestream = bytearray(header)
        bytestream += body
        try:
            pdu, event = self._decode_pdu(bytestream)
            problem = None
            if isinstance(pdu, A_ASSOCIATE_RQ):
                # AE-6 converts it later, on this thread: a conversion that fails there
                # would end the state machine without a word to the peer.
                problem = protocol.rq_pdu_problem(pdu)
                if problem is None:
                    problem = protocol.rq_contexts_problem(pdu.to_primitive())
        except Exception as exc:
            problem = f"undecodable PDU of type 0x{header[0]:02X}: {exc}"
        if problem is not None:
            self.refuse(protocol.INVALID_PARAMETER, problem)
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def _p_data_fast_path(self) -> bool:
        assoc = self.assoc
        return (
            self.state_machine.current_state == "Sta6"
            and self.event_queue.empty()
            and self._recv_pdu.empty()
            and not assoc.get_handlers(evt.EVT_DATA_RECV)
            and not assoc.get_handlers(evt.EVT_PDU_RECV)
            and not assoc.get_handlers(evt.EVT_FSM_TRANSITION)
        )

    def refuse(self, reason: int, why: str) -> None:
        """Send an A-ABORT (service-provider, ``reason``), tell the association, and wait
        in Sta13 for the peer to close (ARTIM bounds the wait), dropping what it sends.

        Runs on the DUL thread, where every read and every state change happens.
        """
        log.warning("A-ABORT to %s: %s", self._peer(), why)
        pdu = A_ABORT_RQ()
        pdu.source = protocol.SERVICE_PROVIDER
        pdu.reason_diagnostic = reason
        sock = self.socket
        if sock is not None and sock._is_connected:
            self._send(pdu)
        state = self.state_machine.current_state
        if state not in ("Sta1", "Sta2", "Sta13"):
            primitive = A_P_ABORT()
            primitive.provider_reason = reason
            self.to_user_queue.put(primitive)
        self._refused = True
        self.artim_timer.restart()
        self.state_machine.transition("Sta13")
        if sock is not None and sock.socket is not None:
            try:
                sock.socket.shutdown(socket.SHUT_WR)  # the A-ABORT, then our FIN
            except OSError:
                pass

    def _drain(self) -> bool:
        """Sta13 after our A-ABORT: read and drop the peer's bytes until it closes."""
        sock = self.socket
        if sock is None or not sock._is_connected or sock.socket is None:
            return False
        if not sock.ready:
            return False
        try:
            data = sock.socket.recv(DRAIN_CHUNK)
        except OSError:
            data = b""
        if not data:
            sock.close()  # Evt17: Sta13 -> Sta1
        return True

    def _peer(self) -> str:
        info = self.assoc.requestor.address_info
        return f"{info.address}:{info.port}" if info is not None else "the peer"

    def _lost(self, exc: OSError | None) -> None:
        """The connection closed (or timed out) at or in a PDU: Evt17."""
        if exc is not None:
            log.warning("connection from %s lost: %s", self._peer(), exc)
        sock = self.socket
        if sock is not None and sock._is_connected:
            sock.close()  # puts Evt17
        else:
            self.event_queue.put("Evt17")

    def _abort_hard(self, exc: Exception) -> None:
        # As pynetdicom does: bypass the state machine, send an A-ABORT and stop.
        if isinstance(exc, InvalidEventError):  # the peer's doing, not a bug of ours
            log.warning("aborting association: %s", exc)
        else:
            log.error("exception in the DUL reactor, aborting association: %s", exc, exc_info=exc)
        abort_pdu = A_ABORT_RQ()
        abort_pdu.source = protocol.SERVICE_PROVIDER
        abort_pdu.reason_diagnostic = protocol.REASON_NOT_SPECIFIED
        if self.socket is not None and self.socket._is_connected:
            self.socket.send(abort_pdu.encode())
        self.ended.set()
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True

    def _wait(self, timeout: float) -> None:
        """Block until the peer sends, a primitive is queued, or ``timeout`` passes."""
        waitables: list[Any] = [self._wake_r]
        wrapper = self.socket
        sock = wrapper.socket if wrapper is not None and wrapper._is_connected else None
        if sock is not None:
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return  # decrypted bytes are buffered; select() cannot see them
            if sock.fileno() >= 0:
                waitables.append(sock)
        try:
            ready, _, _ = select.select(waitables, [], [], timeout)
        except (OSError, ValueError):
            time.sleep(0.001)  # the socket closed under us; the next loop notices
            return
        if self._wake_r in ready:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass


class FastAssociation(Association):
    """An acceptor whose reactor waits on an event instead of polling every millisecond.

    ``handshake_timeout``: seconds from the connection to a complete A-ASSOCIATE-RQ.
    """

    dul: FastDUL

    def __init__(self, ae: Any, mode: str, handshake_timeout: float | None = None) -> None:
        super().__init__(ae, mode)
        self._wake = threading.Event()
        deadline = time.monotonic() + handshake_timeout if handshake_timeout else None
        self.dul = FastDUL(self, deadline)
        self.dul.to_user_queue = WakeQueue(self._wake.set)
        self.dimse = FastDIMSE(self)
        self.dimse.msg_queue = ServeStoresInline(self)
        # The DUL made here starts with pynetdicom's default timers: give it the AE's.
        self.acse_timeout = self.acse_timeout
        self.network_timeout = self.network_timeout
        if handshake_timeout:
            # ARTIM times the wait for the request (Sta2) and for the close (Sta13).
            self.dul.artim_timer.timeout = min(handshake_timeout, self.acse_timeout or 1e9)
        self._slot = False
        self._slot_lock = threading.Lock()

    def abort(self, block: bool = True) -> None:
        if threading.current_thread() is self.dul:
            # pynetdicom aborts from inside a service, which runs on the DUL thread when
            # a C-STORE is served inline: a blocking abort there would wait for itself.
            self._sent_abort = True
            self.dul.refuse(protocol.REASON_NOT_SPECIFIED, "aborted while serving a request")
            return
        super().abort(block)

    def kill(self) -> None:
        self._release_slot()  # the association is over, even if its connection lingers
        self._wake.set()
        super().kill()

    def _release_slot(self) -> None:
        with self._slot_lock:
            slot, self._slot = self._slot, False
        if slot:
            cast("ListenerServer", self._server).release_slot()

    def run_reactor(self) -> None:
        """The acceptor: the handshake, then the association (as pynetdicom's, but a
        connection that never delivers its request ends as soon as that is clear)."""
        self.dul.start()
        self._started_dul = True
        self._dul_ready.wait()
        try:
            request = self._await_request()
            if request is None:
                self._let_go()
                return
            self.requestor.primitive = request
            self._negotiate()
            if self.is_established:
                self._run_reactor()
        finally:
            self._release_slot()
            sock = self.dul.socket
            if self._server and sock is not None and sock.socket is not None:
                self._server.shutdown_request(sock.socket)

    def _await_request(self) -> A_ASSOCIATE | None:
        """The A-ASSOCIATE-RQ; None once the connection is gone or out of time."""
        deadline = self.dul.handshake_deadline
        while True:
            primitive = self.dul.receive_pdu(wait=True, timeout=IDLE_WAIT)
            if primitive is not None:
                return primitive if isinstance(primitive, A_ASSOCIATE) else None
            if self.dul.ended.is_set() or not self.dul.is_alive():
                return None
            # ARTIM closes a silent connection at the deadline; this is a backstop.
            if deadline is not None and time.monotonic() > deadline + 1.0:
                return None

    def _let_go(self) -> None:
        """End a connection that delivered no request: no events, no slot, no waiting."""
        self._kill = True
        self.is_established = False
        self.dul.kill_dul()

    def _negotiate(self) -> None:
        """The checks of ``protocol``, the access policy (EVT_REQUESTED), the slot, and
        pynetdicom's negotiation of the presentation contexts."""
        rejection = protocol.rq_rejection(self.requestor.primitive)
        if rejection is not None:
            self._reject(rejection)
            return
        evt.trigger(self, evt.EVT_REQUESTED, {})
        if self.is_aborted or self.is_rejected:
            return
        self._slot = cast("ListenerServer", self._server).claim_slot()
        if not self._slot:
            self._reject(protocol.REJECT_LOCAL_LIMIT)
            return
        try:
            self.acse.negotiate_association()
        except Exception:
            # A request our checks let through and pynetdicom cannot negotiate: an
            # A-ABORT, not a dead thread and a silent close.
            log.exception("cannot negotiate the association; aborting it")
            self.abort()

    def _reject(self, rejection: tuple[int, int, int]) -> None:
        log.info("rejecting association: result %d, source %d, reason %d", *rejection)
        self.acse.send_reject(*rejection)
        evt.trigger(self, evt.EVT_REJECTED, {})
        self.kill()

    def _run_reactor(self) -> None:
        self._end_announced = False
        try:
            self._reactor_loop()
        finally:
            if not (self._end_announced or self.is_released or self._sent_abort):
                # Ended another way (the DUL hit an error, sent an A-ABORT and stopped):
                # pynetdicom triggers no event then; we do, so that the end is recorded.
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})

    def _reactor_loop(self) -> None:
        self._is_paused = False
        while not self._kill:
            self._wake.wait(IDLE_WAIT)
            self._wake.clear()
            # Paused while an acceptor-side send_*() runs (as in pynetdicom).
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            while not self._kill:
                context_id, msg = self.dimse.get_msg(block=False)
                if msg is None:
                    break
                self._serve_request(msg, context_id)  # type: ignore[arg-type]

            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                self.is_released = True
                self.is_established = False
                self._end_announced = True
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return
            if self.acse.is_aborted():
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                self._end_announced = True
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return
            if not self.dul.is_alive():
                self.kill()
                return
            if self.dul.idle_timer_expired():
                log.warning("network timeout on association %s, aborting", self.name)
                self.abort()
                self.kill()
                return


class FastSocket(AssociationSocket):
    """Reads with ``recv_into`` instead of 4 KiB ``recv`` calls, into a buffer that grows
    by at most ``READ_CHUNK`` at a time as bytes arrive; within ``deadline`` when set."""

    deadline: float | None = None  # monotonic; the DUL sets it during the handshake

    def recv(self, nr_bytes: int) -> bytearray:
        sock = self.socket
        if sock is None:
            raise OSError("the connection is closed")
        deadline = self.deadline
        base_timeout = sock.gettimeout() if deadline is not None else None
        buf = bytearray(min(nr_bytes, READ_CHUNK))
        got = 0
        try:
            while got < nr_bytes:
                if got == len(buf):
                    buf += bytes(min(READ_CHUNK, nr_bytes - got))
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("no complete A-ASSOCIATE-RQ in time")
                    sock.settimeout(left)
                with memoryview(buf) as view, view[got:] as rest:
                    n = sock.recv_into(rest)
                if not n:
                    break
                got += n
        finally:
            if deadline is not None:
                try:
                    sock.settimeout(base_timeout)
                except OSError:
                    pass  # closed under us
        if got < len(buf):
            del buf[got:]  # connection closed early; the DUL sees the short PDU
        return buf


class ListenerRequestHandler(RequestHandler):
    """Creates each acceptor with the fast reactor (pynetdicom 3.0.x only)."""

    def _create_association(self) -> Association:
        server = self.server
        handshake = getattr(server, "handshake_timeout", None)
        if not FAST_REACTOR:
            assoc = super()._create_association()
            if handshake:
                # pynetdicom waits acse_timeout for the request: the handshake's limit.
                assoc.acse_timeout = min(handshake, assoc.acse_timeout or handshake)
            return assoc
        # As RequestHandler._create_association in pynetdicom 3.0, with our classes, and no
        # deep copy of the supported contexts: negotiation reads them, never changes them,
        # and copying ~150 storage contexts costs milliseconds per association.
        assoc = FastAssociation(self.ae, MODE_ACCEPTOR, handshake)
        assoc._server = server
        assoc.name = f"AcceptorThread@{datetime.now():%Y%m%d%H%M%S}"
        assoc.set_socket(FastSocket(assoc, client_socket=cast(socket.socket, self.request)))
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        assoc.acceptor.supported_contexts = list(server.contexts)
        assoc.requestor.address_info = self.remote
        for event, handlers in server._handlers.items():
            if event.is_intervention and handlers:
                assoc.bind(event, *handlers)
            elif isinstance(event, evt.NotificationEvent):
                for handler, args in handlers:  # type: ignore[misc]
                    assoc.bind(event, handler, args)
        return assoc
