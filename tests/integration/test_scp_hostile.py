"""The listener against hostile peers over loopback: PDU lengths that claim gigabytes,
connections that close, stay silent or stop half-way, and requests the standard says to
reject or abort.

Memory is measured on a real listener process (``ivcontrast scp``, one process); the
rest runs against a listener in this process. Peers are raw sockets
(``tests/support/raw_dicom.py``), so that every field can be wrong.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import raw_dicom as raw
from tests.support.raw_dicom import RawPeer
from tests.support.scp_child import ScpChild
from tests.support.scp_harness import InProcessListener

GiB = 1 << 30
INVALID_PARAMETER = (0x02, 0x06)  # A-ABORT: service-provider, invalid-PDU-parameter value
ECHO_CONTEXTS = (
    (1, raw.VERIFICATION, [raw.IMPLICIT_VR_LE]),
    (3, raw.CT_IMAGE, [raw.IMPLICIT_VR_LE]),
)


def echo_seconds(port: int, timeout: float = 5.0) -> float:
    """Seconds from connecting to a C-ECHO response on a new association (raw bytes)."""
    started = time.monotonic()
    with RawPeer(port, timeout=timeout) as peer:
        answer = peer.associate(raw.associate_rq(contexts=ECHO_CONTEXTS))
        assert answer.kind == raw.ASSOCIATE_AC, answer
        peer.send(raw.p_data([(1, 0x03, raw.c_echo_rq())]))
        assert peer.read().dimse_status() == 0x0000
        elapsed = time.monotonic() - started
        assert peer.release().kind == raw.RELEASE_RP
    return elapsed


def established(port: int, max_pdu: int = 16384) -> RawPeer:
    peer = RawPeer(port)
    answer = peer.associate(raw.associate_rq(contexts=ECHO_CONTEXTS, max_pdu=max_pdu))
    assert answer.kind == raw.ASSOCIATE_AC, answer
    return peer


@pytest.fixture(scope="module")
def child(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScpChild]:
    """One listener process for the memory tests (module-wide: it takes seconds to start)."""
    with ScpChild(tmp_path_factory.mktemp("hostile"), max_pdu=262144) as node:
        for _ in range(3):  # warm up: imports, the first associations' allocations
            echo_seconds(node.port)
        yield node


# --- 1. memory: a claimed length is not an allocation -------------------------------------


@pytest.mark.parametrize("phase", ["handshake", "data transfer"])
def test_a_pdu_claiming_1_gib_costs_no_memory_and_is_aborted(child: ScpChild, phase: str) -> None:
    before = child.wait_rss_settled()
    if phase == "handshake":
        peer = RawPeer(child.port)
        peer.send(bytes([raw.ASSOCIATE_RQ, 0]) + GiB.to_bytes(4, "big") + b"\x00\x01")
    else:
        peer = established(child.port)
        peer.send(bytes([raw.P_DATA_TF, 0]) + GiB.to_bytes(4, "big") + b"\x00\x00")
    with peer:
        # The peer stays connected and silent: the listener must neither wait nor allocate.
        answer = peer.read(timeout=2)
        assert answer.abort == INVALID_PARAMETER, answer
        grown = child.rss() - before
        assert grown < 16, f"listener grew {grown:.0f} MiB for a claimed 1 GiB"
    assert echo_seconds(child.port) < 1.0
    assert child.alive()


def test_100_connections_claiming_4_gib_each(child: ScpChild) -> None:
    peak = max(child.wait_rss_settled(), child.rss())
    peers = []
    try:
        for k in range(100):
            peer = RawPeer(child.port) if k % 2 else established(child.port)
            pdu_type = raw.ASSOCIATE_RQ if k % 2 else raw.P_DATA_TF
            peer.send(bytes([pdu_type, 0]) + b"\xff\xff\xff\xff" + b"\x00" * 4)
            peers.append(peer)
        assert echo_seconds(child.port) < 1.0  # still serving, with all of them open
        highest = child.rss()
        assert highest < peak + 64, f"{highest:.0f} MiB against a peak of {peak:.0f} MiB"
        answers = [peer.read(timeout=5) for peer in peers]
        assert [a.abort for a in answers] == [INVALID_PARAMETER] * 100
    finally:
        for peer in peers:
            peer.close()
    assert child.alive()


def test_p_data_longer_than_max_pdu_is_aborted_and_max_pdu_is_not(child: ScpChild) -> None:
    with established(child.port) as peer:
        fragment = raw.c_echo_rq()
        padded = raw.p_data([(1, 0x03, fragment)])
        assert len(padded) - 6 <= 262144
        peer.send(padded)
        assert peer.read().dimse_status() == 0x0000
        # One byte over max_pdu plus the tolerated slack: A-ABORT before the body is read.
        too_long = 262144 + 16 + 1
        peer.send(bytes([raw.P_DATA_TF, 0]) + too_long.to_bytes(4, "big"))
        assert peer.read().abort == INVALID_PARAMETER


def test_the_fallback_reactor_reads_a_claimed_length_without_allocating_it(
    make_listener: Callable[..., InProcessListener], monkeypatch: pytest.MonkeyPatch
) -> None:
    """pynetdicom's own classes (another pynetdicom than 3.0.x): 4 KiB reads, so a claim
    costs nothing, and the listener goes on serving (the silent peer holds its connection
    until scp.network_timeout there)."""
    import os

    from ivcontrast.scp import reactor
    from tests.support.scp_child import rss_mib

    monkeypatch.setattr(reactor, "FAST_REACTOR", False)
    node = make_listener(handshake_timeout=1.0)
    before = rss_mib(os.getpid())
    with RawPeer(node.port) as peer:
        peer.send(bytes([raw.ASSOCIATE_RQ, 0]) + GiB.to_bytes(4, "big") + b"\x00\x01")
        time.sleep(0.5)
        assert rss_mib(os.getpid()) - before < 16
        assert echo_seconds(node.port) < 1.0


# --- 2. lock-out: idle peers hold no slot -------------------------------------------------


def test_connect_and_close_100_times_then_an_association_within_1_s(
    listener: InProcessListener,
) -> None:
    for _ in range(100):
        socket.create_connection(("127.0.0.1", listener.port)).close()
    assert echo_seconds(listener.port) < 1.0


def test_100_silent_connections_hold_no_slot_and_free_it_when_closed(
    make_listener: Callable[..., InProcessListener],
) -> None:
    node = make_listener(max_associations=4, handshake_timeout=30)
    silent = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(100)]
    try:
        time.sleep(0.3)
        assert echo_seconds(node.port) < 1.0  # while they are open
    finally:
        for sock in silent:
            sock.close()
    assert echo_seconds(node.port) < 1.0  # and once the peers closed them


def test_reset_connections_free_their_threads(listener: InProcessListener) -> None:
    before = threading.active_count()
    for _ in range(50):
        RawPeer(listener.port).reset()
    deadline = time.monotonic() + 5
    while threading.active_count() > before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before + 2
    assert echo_seconds(listener.port) < 1.0


@pytest.mark.parametrize("sent", [b"", b"\x01\x00\x00\x00\x01\x00\x00\x01"])  # nothing; half an RQ
def test_a_connection_without_a_complete_request_is_closed_at_the_handshake_timeout(
    make_listener: Callable[..., InProcessListener], sent: bytes
) -> None:
    node = make_listener(handshake_timeout=1.0)
    with RawPeer(node.port) as peer:
        peer.send(sent)
        started = time.monotonic()
        answer = peer.read(timeout=5)
        assert answer.kind in (raw.CLOSED, raw.ABORT), answer
        assert 0.5 < time.monotonic() - started < 2.5


def test_the_association_limit_counts_associations_not_connections(
    make_listener: Callable[..., InProcessListener],
) -> None:
    node = make_listener(max_associations=2)
    held = [established(node.port), established(node.port)]
    try:
        with RawPeer(node.port) as third:
            assert third.associate().reject == (0x02, 0x03, 0x02)  # local-limit-exceeded
    finally:
        for peer in held:
            peer.release()
            peer.close()
    assert echo_seconds(node.port) < 1.0


# --- 5. the standard's answer, never silence --------------------------------------------


@pytest.mark.parametrize(
    ("rq", "expected"),
    [
        (raw.associate_rq(application_context=None), ("reject", (1, 1, 2))),
        (raw.associate_rq(application_context="1.2.3.4"), ("reject", (1, 1, 2))),
        (raw.associate_rq(contexts=()), ("reject", (1, 1, 1))),
        (raw.associate_rq(protocol_version=2), ("reject", (1, 2, 2))),
        (
            raw.associate_rq(contexts=[(2, raw.VERIFICATION, [raw.IMPLICIT_VR_LE])]),
            ("abort", INVALID_PARAMETER),
        ),
        (
            raw.associate_rq(contexts=[(0, raw.VERIFICATION, [raw.IMPLICIT_VR_LE])]),
            ("abort", INVALID_PARAMETER),
        ),
        (
            raw.associate_rq(contexts=[(1, raw.VERIFICATION, [raw.IMPLICIT_VR_LE])] * 2),
            ("abort", INVALID_PARAMETER),
        ),
        (raw.associate_rq(contexts=[(1, raw.VERIFICATION, [])]), ("abort", INVALID_PARAMETER)),
    ],
    ids=[
        "no-app-context",
        "wrong-app-context",
        "no-contexts",
        "protocol-v2",
        "even-id",
        "id-0",
        "duplicate-id",
        "no-transfer-syntax",
    ],
)
def test_bad_association_requests_get_the_standard_answer(
    listener: InProcessListener, rq: bytes, expected: tuple[str, tuple[int, ...]]
) -> None:
    with RawPeer(listener.port) as peer:
        answer = peer.associate(rq, timeout=3)
    kind, value = expected
    assert (answer.reject if kind == "reject" else answer.abort) == value, answer
    assert echo_seconds(listener.port) < 1.0


ECHO = raw.c_echo_rq()
UNKNOWN_COMMAND = raw.command_set(
    {0x0002: raw.VERIFICATION, 0x0100: 0x0ABC, 0x0110: 1, 0x0800: 0x0101}
)


@pytest.mark.parametrize(
    ("pdvs", "expected"),
    [
        ([(2, 0x03, ECHO)], INVALID_PARAMETER),  # an even context ID
        ([(0, 0x03, ECHO)], INVALID_PARAMETER),  # context ID 0
        ([(5, 0x03, ECHO)], INVALID_PARAMETER),  # a context never proposed
        ([(1, 0xFF, ECHO)], INVALID_PARAMETER),  # reserved control header bits
        ([(1, 0x02, b"\x00" * 8)], INVALID_PARAMETER),  # data before any command
        ([(1, 0x03, UNKNOWN_COMMAND)], (0x02, 0x00)),
        (
            [(3, 0x03, raw.c_store_rq(None)), (3, 0x02, b"\x08\x00\x16\x00\x02\x00\x00\x00AB")],
            (0x02, 0x00),
        ),
        (
            [(1, 0x03, raw.c_store_rq("1.2.3", sop_class=raw.VERIFICATION)), (1, 0x02, b"\0" * 8)],
            (0x02, 0x00),
        ),
        ([(1, 0x03, ECHO[:20])], (0x02, 0x00)),  # a truncated command set
        (  # a C-STORE for another SOP Class than its context's (served on the DUL thread)
            [(3, 0x03, raw.c_store_rq("1.2.3", sop_class="1.2.3.4")), (3, 0x02, b"\0" * 8)],
            (0x02, 0x00),
        ),
        ([(1, 0x01, ECHO[:30]), (3, 0x03, ECHO[30:])], INVALID_PARAMETER),  # context switch
    ],
    ids=[
        "even-context",
        "context-0",
        "unknown-context",
        "control-0xFF",
        "data-first",
        "unknown-command",
        "store-without-instance-uid",
        "store-on-verification",
        "truncated-command",
        "store-for-another-class",
        "context-switch",
    ],
)
def test_bad_p_data_and_dimse_messages_are_aborted(
    listener: InProcessListener, pdvs: list[tuple[int, int, bytes]], expected: tuple[int, int]
) -> None:
    with established(listener.port) as peer:
        peer.send(raw.p_data(pdvs))
        answer = peer.read(timeout=3)
    assert answer.abort == expected, answer
    assert echo_seconds(listener.port) < 1.0


def test_c_cancel_gets_no_answer_and_the_association_goes_on(listener: InProcessListener) -> None:
    cancel = raw.command_set({0x0100: 0x0FFF, 0x0120: 1, 0x0800: 0x0101})
    with established(listener.port) as peer:
        peer.send(raw.p_data([(1, 0x03, cancel), (1, 0x03, ECHO)]))
        assert peer.read(timeout=3).dimse_status() == 0x0000
        assert peer.release().kind == raw.RELEASE_RP


def test_spool_untouched_by_protocol_errors(listener: InProcessListener, tmp_path: Path) -> None:
    with established(listener.port) as peer:
        peer.send(raw.p_data([(3, 0x03, raw.c_store_rq(None)), (3, 0x02, b"\x00" * 64)]))
        assert peer.read(timeout=3).abort == (0x02, 0x00)
    assert list(listener.spool.rglob("*.dcm")) == []
    assert listener.incoming() == []


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the UID we send
def test_a_store_whose_instance_uid_is_not_ascii_gets_a_status(listener: InProcessListener) -> None:
    """The response cannot echo such a UID; it leaves it out instead of never answering."""
    command = raw.c_store_rq("1.2.\u00e9")
    with established(listener.port) as peer:
        peer.send(
            raw.p_data([(3, 0x03, command), (3, 0x02, b"\x08\x00\x16\x00\x02\x00\x00\x00AB")])
        )
        status = peer.read(timeout=3).dimse_status()
        assert status is not None and status != 0x0000
        assert peer.release().kind == raw.RELEASE_RP
