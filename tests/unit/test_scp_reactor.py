"""The pieces of the listener's pynetdicom tuning that can be checked without sockets."""

from __future__ import annotations

import pytest
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode

from ivcontrast.scp.reactor import encode_c_store_rsp


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "status", "message_id"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.45", 0x0000, 1),
        ("1.2.840.10008.5.1.4.1.1.4", "1.2.3.4", 0xA700, 65535),  # even-length UID
        ("1.2.840.10008.5.1.4.1.1.7", "2.25.1234567", 0xC210, 300),
    ],
)
def test_fast_c_store_response_matches_pynetdicom(
    sop_class: str, sop_instance: str, status: int, message_id: int
) -> None:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPClassUID = sop_class
    rsp.AffectedSOPInstanceUID = sop_instance
    rsp.Status = status
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    assert encode_c_store_rsp(rsp) == encode(message.command_set, True, True)


def test_p_data_items_are_split_as_pynetdicom_does() -> None:
    from pynetdicom.pdu import P_DATA_TF
    from pynetdicom.pdu_primitives import P_DATA

    from ivcontrast.scp.reactor import _p_data

    sent = P_DATA()
    sent.presentation_data_value_list = [[1, b"\x03command"], [3, b"\x00data fragment"]]
    pdu = P_DATA_TF()
    pdu.from_primitive(sent)
    encoded = pdu.encode()
    ours = _p_data(bytearray(encoded[6:]))
    assert ours is not None
    assert [(cid, bytes(v)) for cid, v in ours.presentation_data_value_list] == [
        (1, b"\x03command"),
        (3, b"\x00data fragment"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x00\x00\x01\x01",  # an item too short for a control header
        b"\x00\x00\x00\x09\x01\x03abc",  # an item longer than the PDU
        b"\x00\x00",  # a truncated item length
    ],
)
def test_malformed_p_data_items(body: bytes) -> None:
    from ivcontrast.scp.reactor import _p_data

    assert _p_data(bytearray(body)) is None
