"""The listener's DIMSE layer: splits a P-DATA-TF into fragments without copying
(``_p_data``), checks every incoming fragment and message, answers C-STORE without
building a Dataset, and serves C-STORE requests on the DUL thread.

``FastDIMSE.receive_primitive`` is pynetdicom's, with the checks of ``protocol`` on each
P-DATA fragment (accepted context, control header, order) and on each complete message
(a request we serve): anything else ends in an A-ABORT instead of a message pynetdicom
would drop without a word while the sender waits for its response. Like ``reactor``, it
overrides private parts of pynetdicom 3.0 and is used only with that series.
"""

from __future__ import annotations

import logging
import queue
import struct
from typing import TYPE_CHECKING, Any, cast

from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

from ivcontrast.scp import protocol

if TYPE_CHECKING:
    from ivcontrast.scp.reactor import FastAssociation

log = logging.getLogger(__name__)


class WakeQueue(queue.Queue[Any]):
    """A queue that calls ``wake`` after each put."""

    def __init__(self, wake: Any) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


def encode_c_store_rsp(rsp: C_STORE) -> bytes:
    """The command set of a C-STORE-RSP, implicit VR little endian (PS3.7 9.3.1.2)."""

    def ui(element: int, value: str) -> bytes:
        if not value.isascii():
            return b""  # not a UID: left out (it is optional in the response, PS3.7 9.3.1.2)
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


class FastDIMSE(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider with strict receiving and a fast C-STORE response.

    A plain C-STORE response is sent without building and encoding a pydicom Dataset.
    Every other message, a response that carries optional fields, and any association
    with EVT_DIMSE_SENT handlers (pynetdicom's debug logging) take pynetdicom's own path.
    """

    def __init__(self, assoc: Any) -> None:
        super().__init__(assoc)
        self._order = protocol.PdvOrder()

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

    def receive_primitive(self, primitive: P_DATA) -> None:
        """Take in a P-DATA's fragments; queue each complete request we serve.

        Runs on the DUL thread (its fast path, or the state machine's DT-2), so a
        violation aborts there and then. Fragments are decoded one at a time, so a PDU
        that ends one message and starts the next loses neither.
        """
        accepted = self.assoc._accepted_cx
        for context_id, fragment in primitive.presentation_data_value_list:
            problem = self._order.problem(context_id, fragment[0], accepted)
            if problem is not None:
                self._abort(protocol.INVALID_PARAMETER, problem)
                return
            if self.message is None:
                self.message = DIMSEMessage()
            single = P_DATA()
            # Appended, as in pynetdicom's P_DATA_TF.to_primitive: the setter wants bytes.
            single.presentation_data_value_list = []
            single.presentation_data_value_list.append((context_id, fragment))
            try:
                complete = self.message.decode_msg(single, self.assoc)
            except Exception as exc:
                self._abort(protocol.REASON_NOT_SPECIFIED, f"undecodable command set: {exc!r}")
                return
            if complete and not self._deliver(context_id):
                return

    def _deliver(self, context_id: int) -> bool:
        """Queue the complete message (or drop a C-CANCEL); False if it aborted instead."""
        message = self.message
        assert message is not None
        self.message = None
        self._order.reset()
        evt.trigger(self.assoc, evt.EVT_DIMSE_RECV, {"message": message})
        try:
            request = message.message_to_primitive()
        except Exception as exc:
            self._abort(protocol.REASON_NOT_SPECIFIED, f"undecodable DIMSE message: {exc!r}")
            return False
        abstract = str(self.assoc._accepted_cx[context_id].abstract_syntax)
        problem = protocol.message_problem(request, abstract)
        if problem == protocol.IGNORE:
            return True
        if problem is not None:
            self._abort(protocol.REASON_NOT_SPECIFIED, problem)
            return False
        self.msg_queue.put((context_id, cast(Any, request)))
        return True

    def _abort(self, reason: int, why: str) -> None:
        self.message = None
        self._order.reset()
        self.dul.refuse(reason, why)  # type: ignore[attr-defined]


class ServeStoresInline(WakeQueue):
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
