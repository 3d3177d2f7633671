"""The listener's protocol rules (``scp.protocol``), without sockets."""

from __future__ import annotations

from io import BytesIO

import pytest
from pynetdicom.dimse_primitives import C_CANCEL, C_ECHO, C_FIND, C_STORE
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext

from ivcontrast.scp import protocol

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize(
    ("pdu_type", "state", "max_pdu", "limit"),
    [
        (protocol.P_DATA_TF, "Sta6", 16384, 16384 + protocol.P_DATA_SLACK),
        (protocol.P_DATA_TF, "Sta6", 0, protocol.PDU_LENGTH_MAX),
        (protocol.P_DATA_TF, "Sta2", 16384, protocol.ASSOCIATION_PDU_MAX),
        (protocol.A_ASSOCIATE_RQ, "Sta2", 1 << 30, protocol.ASSOCIATION_PDU_MAX),
        (protocol.A_RELEASE_RQ, "Sta6", 0, protocol.ASSOCIATION_PDU_MAX),
    ],
)
def test_pdu_limit(pdu_type: int, state: str, max_pdu: int, limit: int) -> None:
    assert protocol.pdu_limit(pdu_type, state, max_pdu) == limit


def request(app_context: str | None, contexts: int) -> A_ASSOCIATE:
    primitive = A_ASSOCIATE()
    if app_context is not None:
        primitive.application_context_name = app_context
    for k in range(contexts):
        cx = PresentationContext()
        cx.context_id = 2 * k + 1
        cx.abstract_syntax = CT
        cx.transfer_syntax = ["1.2.840.10008.1.2"]
        primitive.presentation_context_definition_list.append(cx)
    return primitive


@pytest.mark.parametrize(
    ("app_context", "contexts", "rejection"),
    [
        (protocol.DICOM_APPLICATION_CONTEXT, 1, None),
        (None, 1, protocol.REJECT_APPLICATION_CONTEXT),
        ("1.2.3", 1, protocol.REJECT_APPLICATION_CONTEXT),
        (protocol.DICOM_APPLICATION_CONTEXT, 0, protocol.REJECT_NO_REASON),
    ],
)
def test_rq_rejection(
    app_context: str | None, contexts: int, rejection: tuple[int, int, int] | None
) -> None:
    assert protocol.rq_rejection(request(app_context, contexts)) == rejection


def test_fragments_in_order_and_out_of_it() -> None:
    accepted = {1: object(), 3: object()}
    order = protocol.PdvOrder()
    assert order.problem(1, 0x01, accepted) is None  # command, more to come
    assert order.problem(1, 0x03, accepted) is None  # command, last
    assert order.problem(1, 0x00, accepted) is None  # data
    assert "context" in (order.problem(3, 0x02, accepted) or "")  # another context
    order.reset()
    assert "before the command" in (order.problem(1, 0x02, accepted) or "")
    assert "reserved" in (order.problem(1, 0x07, accepted) or "")
    assert "not accepted" in (order.problem(2, 0x03, accepted) or "")


def store(instance: str | None, sop_class: str = CT) -> C_STORE:
    msg = C_STORE()
    msg.MessageID = 1
    msg.AffectedSOPClassUID = sop_class
    if instance is not None:
        msg.AffectedSOPInstanceUID = instance
    msg.Priority = 2
    msg.DataSet = BytesIO(b"")
    return msg


def test_message_problem() -> None:
    echo = C_ECHO()
    echo.MessageID = 1
    echo.AffectedSOPClassUID = protocol.VERIFICATION
    assert protocol.message_problem(echo, protocol.VERIFICATION) is None
    assert protocol.message_problem(store("1.2.3"), CT) is None
    assert "AffectedSOPInstanceUID" in (protocol.message_problem(store(None), CT) or "")
    assert "context" in (protocol.message_problem(store("1.2.3"), protocol.VERIFICATION) or "")
    assert "SOP Class" in (protocol.message_problem(store("1.2.3", "1.2.3.4"), CT) or "")
    assert protocol.message_problem(C_CANCEL(), CT) == protocol.IGNORE
    find = C_FIND()
    find.MessageID = 1
    assert "not a service" in (protocol.message_problem(find, CT) or "")
    response = store("1.2.3")
    response.MessageIDBeingRespondedTo = 1
    assert "response" in (protocol.message_problem(response, CT) or "")
