"""A DICOM peer made of bytes, for tests that send what no well-behaved SCU would.

PDUs, items and DIMSE command sets are built by hand (PS3.8 9.3, PS3.7 6.3) so that any
field can be wrong; :class:`RawPeer` sends them over a loopback socket and reads back
whatever the listener answers (a PDU, a closed connection, or nothing before a timeout).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.9.7433.1.1"

# PDU types (PS3.8 9.3.1)
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = 0x04, 0x05, 0x06, 0x07

# What a read can end in besides a PDU.
CLOSED = "closed"
SILENT = "silent"


def uid_bytes(value: str) -> bytes:
    return value.encode("latin-1")


def item(item_type: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(payload)) + payload


def pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, len(body)) + body


def presentation_context(context_id: int, abstract: str, syntaxes: Sequence[str]) -> bytes:
    body = struct.pack(">BBBB", context_id, 0, 0, 0) + item(0x30, uid_bytes(abstract))
    body += b"".join(item(0x40, uid_bytes(ts)) for ts in syntaxes)
    return item(0x20, body)


def user_information(max_pdu: int = 16384, implementation_uid: str = IMPLEMENTATION_UID) -> bytes:
    return item(
        0x50, item(0x51, struct.pack(">L", max_pdu)) + item(0x52, uid_bytes(implementation_uid))
    )


def associate_rq(
    called: str = "IVCONTRAST",
    calling: str = "RAWSCU",
    contexts: Iterable[tuple[int, str, Sequence[str]]] = ((1, VERIFICATION, [IMPLICIT_VR_LE]),),
    application_context: str | None = APPLICATION_CONTEXT,
    max_pdu: int = 16384,
    protocol_version: int = 1,
    extra_items: bytes = b"",
) -> bytes:
    """An A-ASSOCIATE-RQ PDU; ``application_context=None`` leaves the item out."""
    body = struct.pack(">HH", protocol_version, 0)
    body += called.encode("latin-1").ljust(16)[:16] + calling.encode("latin-1").ljust(16)[:16]
    body += bytes(32)
    if application_context is not None:
        body += item(0x10, uid_bytes(application_context))
    body += b"".join(presentation_context(*cx) for cx in contexts)
    body += user_information(max_pdu) + extra_items
    return pdu(ASSOCIATE_RQ, body)


def p_data(pdvs: Iterable[tuple[int, int, bytes]]) -> bytes:
    """A P-DATA-TF PDU of (presentation context ID, message control header, fragment)."""
    body = b"".join(
        struct.pack(">LBB", len(fragment) + 2, cid, mch) + fragment for cid, mch, fragment in pdvs
    )
    return pdu(P_DATA_TF, body)


def release_rq() -> bytes:
    return pdu(RELEASE_RQ, bytes(4))


def abort(source: int = 0, reason: int = 0) -> bytes:
    return pdu(ABORT, struct.pack(">BBBB", 0, 0, source, reason))


def element(tag: int, value: int | str | bytes) -> bytes:
    """One command element, implicit VR little endian: an int is US, a str is UI."""
    if isinstance(value, int):
        raw = struct.pack("<H", value)
    else:
        raw = value.encode("latin-1") if isinstance(value, str) else value
        if len(raw) % 2:
            raw += b"\0"
    return struct.pack("<HHL", 0x0000, tag, len(raw)) + raw


def command_set(elements: dict[int, int | str | bytes]) -> bytes:
    """A command set with its group length (0000,0000) computed."""
    body = b"".join(element(tag, elements[tag]) for tag in sorted(elements))
    return struct.pack("<HHLL", 0x0000, 0x0000, 4, len(body)) + body


def c_echo_rq(message_id: int = 1) -> bytes:
    return command_set({0x0002: VERIFICATION, 0x0100: 0x0030, 0x0110: message_id, 0x0800: 0x0101})


def c_store_rq(sop_instance: str | None, sop_class: str = CT_IMAGE, message_id: int = 1) -> bytes:
    elements: dict[int, int | str | bytes] = {
        0x0002: sop_class,
        0x0100: 0x0001,
        0x0110: message_id,
        0x0700: 0x0002,
        0x0800: 0x0000,  # a data set follows
    }
    if sop_instance is not None:
        elements[0x1000] = sop_instance
    return command_set(elements)


def command_elements(raw: bytes) -> dict[int, bytes]:
    """The elements of an implicit VR little endian command set, by element number."""
    out: dict[int, bytes] = {}
    offset = 0
    while offset + 8 <= len(raw):
        _group, number, length = struct.unpack_from("<HHL", raw, offset)
        out[number] = raw[offset + 8 : offset + 8 + length]
        offset += 8 + length
    return out


@dataclass
class Answer:
    """What the listener answered: a PDU, or CLOSED, or SILENT (nothing before the timeout)."""

    kind: int | str
    body: bytes = b""

    @property
    def abort(self) -> tuple[int, int] | None:
        """(source, reason) of an A-ABORT."""
        return (self.body[2], self.body[3]) if self.kind == ABORT else None

    @property
    def reject(self) -> tuple[int, int, int] | None:
        """(result, source, reason) of an A-ASSOCIATE-RJ."""
        return (self.body[1], self.body[2], self.body[3]) if self.kind == ASSOCIATE_RJ else None

    def context_results(self) -> dict[int, int]:
        """Presentation context ID -> result of an A-ASSOCIATE-AC."""
        assert self.kind == ASSOCIATE_AC
        results: dict[int, int] = {}
        offset = 68
        while offset + 4 <= len(self.body):
            item_type, _, length = struct.unpack_from(">BBH", self.body, offset)
            if item_type == 0x21:
                results[self.body[offset + 4]] = self.body[offset + 6]
            offset += 4 + length
        return results

    def dimse_status(self) -> int | None:
        """The Status (0000,0900) of a one-PDU DIMSE response."""
        if self.kind != P_DATA_TF:
            return None
        command = self.body[6:]  # item length (4), context ID, control header
        status = command_elements(command).get(0x0900)
        return struct.unpack("<H", status)[0] if status else None


class RawPeer:
    """A TCP connection to the listener that sends bytes and reads PDUs."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> bool:
        """Send ``data``; False if the listener has already closed the connection."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def _read_exactly(self, count: int, deadline: float) -> bytes | str:
        chunks = bytearray()
        while len(chunks) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                return SILENT
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(min(count - len(chunks), 1 << 16))
            except TimeoutError:
                return SILENT
            except OSError:
                return CLOSED
            if not chunk:
                return CLOSED
            chunks += chunk
        return bytes(chunks)

    def read(self, timeout: float | None = None) -> Answer:
        """The next PDU, or CLOSED, or SILENT if nothing complete came in ``timeout`` s."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        header = self._read_exactly(6, deadline)
        if isinstance(header, str):
            return Answer(header)
        pdu_type, _, length = struct.unpack(">BBL", header)
        if length > 1 << 24:
            return Answer(pdu_type)  # not ours to read
        body = self._read_exactly(length, deadline)
        if isinstance(body, str):
            return Answer(body)
        return Answer(pdu_type, body)

    def associate(self, rq: bytes | None = None, timeout: float | None = None) -> Answer:
        self.send(associate_rq() if rq is None else rq)
        return self.read(timeout)

    def release(self, timeout: float | None = None) -> Answer:
        self.send(release_rq())
        return self.read(timeout)

    def reset(self) -> None:
        """Close with a TCP RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()
