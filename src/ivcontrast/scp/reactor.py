"""Event-driven reactors for pynetdicom's acceptor.

pynetdicom 3.0 runs two polling loops per association: the DUL thread and the association
thread each sleep 1 ms whenever they find nothing to do. A C-STORE exchange crosses
between them several times (PDUs in, the complete message to the handler, the response
back to the socket), so on a single association most of the time per image is spent
asleep: a listener that only writes the received bytes tops out near 160 images/s.

Here the two threads wait on what they are waiting for instead: the DUL thread in
``select()`` on the peer's socket and a wake-up pipe (written when the association thread
queues a primitive to send), the association thread on an event set whenever a message or
an ACSE primitive is queued for it. The state machine, the PDU codecs and the service
classes are pynetdicom's own; only the two loops (and a socket read that fills a buffer
in one call instead of 4 KiB at a time) are replaced.

These classes override private parts of pynetdicom, so they are used only with the 3.0
series they were written against; with any other version the listener falls back to
pynetdicom's own classes (correct, only slower) and says so in the log. The association
server that accepts the connections (socket options, a socket shared by several
processes) is ``acceptor.ListenerServer``.
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
from typing import Any, cast

import pynetdicom
from pynetdicom import evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket, RequestHandler

log = logging.getLogger(__name__)

FAST_REACTOR = pynetdicom.__version__.startswith("3.0.")
IDLE_WAIT = 0.05  # seconds; bounds how late the timers (ARTIM, network timeout) are checked


class _WakeQueue(queue.Queue[Any]):
    """A queue that calls ``wake`` after each put."""

    def __init__(self, wake: Any) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


def _p_data(body: bytearray) -> P_DATA | None:
    """The P-DATA primitive of a P-DATA-TF PDU's items (PS3.8 9.3.5); None if malformed.

    The PDV values are views into ``body`` (DIMSE copies them into its message buffers).
    """
    view = memoryview(body)
    pdvs = []
    offset, end = 0, len(view)
    while offset < end:
        if offset + 6 > end:
            return None
        item_length = int.from_bytes(view[offset : offset + 4], "big")
        if item_length < 2 or offset + 4 + item_length > end:
            return None
        # (presentation context ID, message control header + fragment)
        pdvs.append((view[offset + 4], view[offset + 5 : offset + 4 + item_length]))
        offset += 4 + item_length
    if not pdvs:
        return None
    primitive = P_DATA()
    primitive.presentation_data_value_list = []
    # As pynetdicom's P_DATA_TF.to_primitive does: appended, not validated as bytes.
    primitive.presentation_data_value_list.extend(pdvs)  # type: ignore[arg-type]
    return primitive


class FastDUL(DULServiceProvider):
    """pynetdicom's DUL provider with a loop that blocks in select() instead of sleeping."""

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        self._wake_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.to_provider_queue = _WakeQueue(self.wake)

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
            self.state_machine.do_action(event)

    def _read_pdu_data(self) -> None:
        """Read one PDU; a P-DATA-TF during data transfer goes straight to the DIMSE layer.

        pynetdicom decodes every PDU into objects, queues an event, and runs the state
        machine, whose only action for a P-DATA-TF in Sta6 is to hand its PDVs to DIMSE and
        stay in Sta6. A CT slice is several such PDUs; doing just that, without copies or
        queues, saves a good share of the listener's CPU. Any other PDU, any other state,
        pending events, or bound PDU/transition handlers: pynetdicom's own path.
        """
        if not self._p_data_fast_path():
            super()._read_pdu_data()
            return
        sock = self.socket
        assert sock is not None
        try:
            header = sock.recv(6)
            if len(header) < 6:
                raise OSError("connection closed in a PDU header")
            pdu_type, _, length = struct.unpack(">BBL", header)
            if pdu_type != 0x04:
                self._finish_pdu(header, pdu_type, length)
                return
            body = sock.recv(length)
            if len(body) != length:
                raise OSError(f"connection closed after {len(body)} of {length} PDU bytes")
        except (OSError, TimeoutError) as exc:
            log.error("connection closed before the entire PDU was received: %s", exc)
            self.event_queue.put("Evt17")
            return
        primitive = _p_data(body)
        if primitive is None:
            log.error("invalid P-DATA-TF PDU received")
            self.event_queue.put("Evt19")
            return
        self.assoc.dimse.receive_primitive(primitive)

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

    def _finish_pdu(self, header: bytes | bytearray, pdu_type: int, length: int) -> None:
        """The rest of pynetdicom's _read_pdu_data, for a PDU whose header we have read."""
        assert self.socket is not None
        if pdu_type not in (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07):
            log.error("unknown PDU type received: 0x%02X", pdu_type)
            self.event_queue.put("Evt19")
            return
        bytestream = bytearray(header)
        bytestream += self.socket.recv(length)
        if len(bytestream) != 6 + length:
            log.error("the received PDU is shorter than expected")
            self.event_queue.put("Evt17")
            return
        try:
            pdu, event = self._decode_pdu(bytestream)
        except Exception as exc:
            log.error("unable to decode the received PDU: %s", exc)
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def _abort_hard(self, exc: Exception) -> None:
        # As pynetdicom does: bypass the state machine, send an A-ABORT and stop.
        log.error("exception in the DUL reactor, aborting association: %s", exc, exc_info=exc)
        abort_pdu = A_ABORT_RQ()
        abort_pdu.source = 0x02
        abort_pdu.reason_diagnostic = 0x00
        if self.socket is not None:
            self.socket.send(abort_pdu.encode())
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


def encode_c_store_rsp(rsp: C_STORE) -> bytes:
    """The command set of a C-STORE-RSP, implicit VR little endian (PS3.7 9.3.1.2)."""

    def ui(element: int, value: str) -> bytes:
        raw = value.encode("ascii")
        if len(raw) % 2:
            raw += b"\0"
        return struct.pack("<HHI", 0x0000, element, len(raw)) + raw

    def us(element: int, value: int) -> bytes:
        return struct.pack("<HHIH", 0x0000, element, 2, value)

    body = b"".join(
        (
            ui(0x0002, str(rsp.AffectedSOPClassUID)),
            us(0x0100, 0x8001),
            us(0x0120, int(rsp.MessageIDBeingRespondedTo)),  # type: ignore[arg-type]
            us(0x0800, 0x0101),  # no data set follows
            us(0x0900, int(rsp.Status)),  # type: ignore[arg-type]
            ui(0x1000, str(rsp.AffectedSOPInstanceUID)),
        )
    )
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(body)) + body


class FastDIMSE(DIMSEServiceProvider):
    """Sends a plain C-STORE response without building and encoding a pydicom Dataset.

    Every other message, a response that carries optional fields, and any association
    with EVT_DIMSE_SENT handlers (pynetdicom's debug logging) take pynetdicom's own path.
    """

    def send_msg(self, primitive: Any, context_id: int) -> None:
        if (
            type(primitive) is C_STORE
            and primitive.MessageIDBeingRespondedTo is not None
            and primitive.ErrorComment is None
            and primitive.OffendingElement is None
            and primitive.AffectedSOPClassUID
            and primitive.AffectedSOPInstanceUID
            and not self.assoc.get_handlers(evt.EVT_DIMSE_SENT)
        ):
            command = encode_c_store_rsp(primitive)
            if self.maximum_pdu_size == 0 or len(command) + 7 <= self.maximum_pdu_size:
                pdata = P_DATA()
                # 0x03: a command fragment, and the last one
                pdata.presentation_data_value_list = []
                pdata.presentation_data_value_list.append((context_id, b"\x03" + command))
                self.dul.send_pdu(pdata)
                return
        super().send_msg(primitive, context_id)


class _ServeStoresInline(_WakeQueue):
    """The DIMSE message queue of an acceptor, which serves C-STORE requests as they
    complete, on the DUL thread, instead of waking the association thread for each.

    The sender waits for our response before it sends more (we negotiate no asynchronous
    operations), so the DUL thread has nothing else to do meanwhile; the hand-over to the
    association thread and back cost about as much CPU as our whole store handler.
    Every other message goes to the association thread as in pynetdicom.
    """

    def __init__(self, assoc: FastAssociation) -> None:
        super().__init__(assoc._wake.set)
        self._assoc = assoc

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        context_id, msg = item
        assoc = self._assoc
        if (
            type(msg) is C_STORE
            and msg.MessageIDBeingRespondedTo is None
            and assoc.is_established
            and not assoc._sent_release
            and assoc._reactor_checkpoint.is_set()  # no acceptor-side send_*() running
        ):
            assoc._serve_request(msg, context_id)
            return
        super().put(item, block, timeout)


class FastAssociation(Association):
    """An acceptor whose reactor waits on an event instead of polling every millisecond."""

    def __init__(self, ae: Any, mode: str) -> None:
        super().__init__(ae, mode)
        self._wake = threading.Event()
        self.dul = FastDUL(self)
        self.dul.to_user_queue = _WakeQueue(self._wake.set)
        self.dimse = FastDIMSE(self)
        self.dimse.msg_queue = _ServeStoresInline(self)

    def kill(self) -> None:
        self._wake.set()
        super().kill()

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
    """Reads a whole PDU with ``recv_into`` instead of 4 KiB ``recv`` calls."""

    def recv(self, nr_bytes: int) -> bytearray:
        sock = self.socket
        if sock is None:
            raise OSError("the connection is closed")
        buf = bytearray(nr_bytes)
        got = 0
        with memoryview(buf) as view:
            while got < nr_bytes:
                n = sock.recv_into(view[got:])
                if not n:
                    break
                got += n
        if got < nr_bytes:
            del buf[got:]  # connection closed early; the DUL sees the short PDU
        return buf


class ListenerRequestHandler(RequestHandler):
    """Creates each acceptor with the fast reactor (pynetdicom 3.0.x only)."""

    def _create_association(self) -> Association:
        if not FAST_REACTOR:
            return super()._create_association()
        # As RequestHandler._create_association in pynetdicom 3.0, with our classes, and no
        # deep copy of the supported contexts: negotiation reads them, never changes them,
        # and copying ~150 storage contexts costs milliseconds per association.
        server = self.server
        assoc = FastAssociation(self.ae, MODE_ACCEPTOR)
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
