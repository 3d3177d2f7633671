"""Generated hostile input for the listener, and a runner that checks what it answers.

``generate(count, seed)`` yields :class:`Case` s of five classes, in proportion:

- ``associate``: A-ASSOCIATE-RQ fields (AE titles, protocol version, application context,
  presentation contexts and their IDs, user information, item lengths, stray bytes);
- ``framing``: PDUs during data transfer (types, lengths, PDV items, context IDs,
  control headers, claimed lengths up to 4 GiB);
- ``dimse``: command sets (missing, unknown or mistyped elements, command fields, data
  set types, lengths, truncation);
- ``dataset``: a C-STORE of a small CT image whose bytes are flipped, truncated, given
  wrong VRs or lengths, or hostile UIDs;
- ``connection``: connect-and-close, resets, silence, half-sent PDUs, byte-by-byte sends.

:class:`FuzzRun` sends each case to a listener process (``scp_child.ScpChild``) and
classifies the answer (A-ASSOCIATE-RJ, A-ABORT, a DIMSE status, a release, a close);
after each it checks that the listener answers C-ECHO within 1 s, is the same process,
and (every few cases) how much memory it holds; at the end, that nothing was written
outside the spool. ``hangs`` are cases the listener left unanswered when an answer was
due (after our A-RELEASE-RQ, or past ``scp.handshake_timeout``).
"""

from __future__ import annotations

import random
import re
import struct
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import raw_dicom as raw
from tests.support.raw_dicom import RawPeer
from tests.support.scp_child import ScpChild

CT = raw.CT_IMAGE
ECHO_CONTEXTS = ((1, raw.VERIFICATION, [raw.IMPLICIT_VR_LE]), (3, CT, [raw.IMPLICIT_VR_LE]))
STORE_CONTEXTS = (
    (1, raw.VERIFICATION, [raw.IMPLICIT_VR_LE]),
    (3, CT, [raw.IMPLICIT_VR_LE]),
    (5, CT, [raw.EXPLICIT_VR_LE]),
)
FIRST_WAIT = 0.3  # seconds before a silent listener is asked to release
ANSWER_WAIT = 3.0  # seconds an answer may take once one is due
HANDSHAKE_TIMEOUT = 1.0  # the fuzzed listener's scp.handshake_timeout
SPOOLED = re.compile(r"[0-9.]{1,64}/[0-9.]{1,64}/[0-9.]{1,64}\.dcm")


@dataclass
class Case:
    """``setup``: 'none' or 'established' (an association with STORE_CONTEXTS first);
    ``chunks``: bytes sent in order; ``end``: 'read' (classify the answer), 'close',
    'reset', or 'silent' (send, then wait for the listener to close)."""

    cls: str
    name: str
    chunks: list[bytes]
    setup: str = "none"
    end: str = "read"
    pause: float = 0.0  # between chunks


# --- generators ----------------------------------------------------------------------


def _hostile_text(rng: random.Random, size: int) -> bytes:
    alphabet = [b"\x00", b" ", b"\x1b", b"\\", b"/", b"..", b"\xff", b"A", b"1", b".", b"\n"]
    return b"".join(rng.choice(alphabet) for _ in range(size))[:size]


def _uid(rng: random.Random) -> str:
    return rng.choice(
        [
            CT,
            raw.VERIFICATION,
            "1.2.3",
            "",
            "1.2.840.10008.5.1.4.1.1.2\x00",
            "9" * 70,
            "../../etc/passwd",
            "1.2..3",
            " 1.2.3",
        ]
    )


def _flip(data: bytes, rng: random.Random, flips: int, start: int = 0) -> bytes:
    out = bytearray(data)
    for _ in range(flips):
        if len(out) > start:
            out[rng.randrange(start, len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _rq_body(rq: bytes) -> bytes:
    return rq[6:]


def gen_associate(rng: random.Random, k: int) -> Case:
    contexts: list[tuple[int, str, list[str]]] = [(1, raw.VERIFICATION, [raw.IMPLICIT_VR_LE])]
    kwargs: dict[str, object] = {}
    kind = rng.choice(
        ["titles", "version", "app", "contexts", "ids", "user", "flips", "junk", "many"]
    )
    if kind == "titles":
        kwargs["called"] = _hostile_text(rng, 16).decode("latin-1")
        kwargs["calling"] = _hostile_text(rng, 16).decode("latin-1")
    elif kind == "version":
        kwargs["protocol_version"] = rng.randrange(0, 1 << 16)
    elif kind == "app":
        kwargs["application_context"] = rng.choice(
            [None, "1.2.3", "", "1.2.840.10008.3.1.1.1\x00", "9" * 200, _uid(rng)]
        )
    elif kind == "contexts":
        contexts = [
            (2 * i + 1, _uid(rng), [_uid(rng) for _ in range(rng.randrange(0, 4))])
            for i in range(rng.randrange(0, 6))
        ]
    elif kind == "ids":
        contexts = [
            (rng.randrange(0, 256), raw.VERIFICATION, [raw.IMPLICIT_VR_LE])
            for _ in range(rng.randrange(1, 5))
        ]
    elif kind == "user":
        kwargs["max_pdu"] = rng.choice([0, 1, 6, 0xFFFFFFFF, rng.randrange(1 << 32)])
        kwargs["extra_items"] = raw.item(rng.randrange(0x50, 0x60), _hostile_text(rng, 20))
    elif kind == "many":
        contexts = [(2 * i + 1, CT, [raw.IMPLICIT_VR_LE] * 8) for i in range(128)]
    rq = raw.associate_rq(
        called=str(kwargs.pop("called", "IVCONTRAST")),
        calling=str(kwargs.pop("calling", "FUZZSCU")),
        contexts=contexts,
        **kwargs,  # type: ignore[arg-type]
    )
    if kind == "flips":
        body = _flip(_rq_body(rq), rng, rng.randrange(1, 8), start=4)
        rq = raw.pdu(raw.ASSOCIATE_RQ, body)
    elif kind == "junk":
        rq = raw.pdu(raw.ASSOCIATE_RQ, _rq_body(rq) + _hostile_text(rng, rng.randrange(1, 40)))
    return Case("associate", f"{kind}-{k}", [rq])


def gen_framing(rng: random.Random, k: int) -> Case:
    echo = raw.c_echo_rq()
    kind = rng.choice(
        ["type", "short-length", "huge", "pdv-length", "context", "control", "multi", "acse"]
    )
    chunks: list[bytes]
    end = "read"
    if kind == "type":
        chunks = [raw.pdu(rng.randrange(0, 256), _hostile_text(rng, rng.randrange(0, 16)))]
    elif kind == "short-length":
        pdu = bytearray(raw.p_data([(1, 0x03, echo)]))
        struct.pack_into(">L", pdu, 2, rng.randrange(0, len(pdu) - 6))
        chunks = [bytes(pdu)]
    elif kind == "huge":
        claim = rng.choice([1 << 30, 0xFFFFFFFF, 262144 + 17, rng.randrange(1 << 20, 1 << 32)])
        chunks = [bytes([raw.P_DATA_TF, 0]) + claim.to_bytes(4, "big") + b"\x00" * 6]
    elif kind == "pdv-length":
        item_length = rng.choice([0, 1, 2, len(echo) + 50, 0xFFFFFFFF])
        body = struct.pack(">LBB", item_length, 1, 0x03) + echo
        chunks = [raw.pdu(raw.P_DATA_TF, body)]
    elif kind == "context":
        chunks = [raw.p_data([(rng.randrange(0, 256), 0x03, echo)])]
    elif kind == "control":
        chunks = [raw.p_data([(1, rng.randrange(0, 256), echo)])]
    elif kind == "multi":
        half = rng.randrange(1, len(echo))
        pdvs = [(1, 0x01, echo[:half]), (rng.choice([1, 3]), 0x03, echo[half:])]
        chunks = [raw.p_data(pdvs)]
    else:
        chunks = [
            rng.choice(
                [
                    raw.associate_rq(),
                    raw.pdu(raw.ASSOCIATE_AC, b"\x00" * 68),
                    raw.pdu(raw.ASSOCIATE_RJ, b"\x00\x01\x01\x01"),
                    raw.pdu(raw.RELEASE_RP, b"\x00" * 4),
                    raw.abort(0, 0),
                    raw.pdu(raw.RELEASE_RQ, _hostile_text(rng, 9)),
                ]
            )
        ]
    return Case("framing", f"{kind}-{k}", chunks, setup="established", end=end)


def _command_elements(rng: random.Random) -> dict[int, int | str | bytes]:
    store = rng.random() < 0.6
    if store:
        elements: dict[int, int | str | bytes] = {
            0x0002: CT,
            0x0100: 0x0001,
            0x0110: rng.randrange(1 << 16),
            0x0700: 0x0002,
            0x0800: 0x0000,
            0x1000: "1.2.3.4",
        }
    else:
        elements = {0x0002: raw.VERIFICATION, 0x0100: 0x0030, 0x0110: 1, 0x0800: 0x0101}
    for _ in range(rng.randrange(1, 4)):
        choice = rng.random()
        if choice < 0.3 and elements:
            del elements[rng.choice(list(elements))]
        elif choice < 0.5:
            elements[0x0100] = rng.choice(
                [
                    0x0001,
                    0x0020,
                    0x0021,
                    0x0010,
                    0x0FFF,
                    0x8001,
                    0x0120,
                    0x0100,
                    rng.randrange(1 << 16),
                ]
            )
        elif choice < 0.65:
            elements[0x0800] = rng.choice([0x0101, 0x0000, 0x0102, rng.randrange(1 << 16)])
        elif choice < 0.8:
            elements[rng.choice([0x0002, 0x1000, 0x0110])] = _hostile_text(
                rng, rng.randrange(0, 80)
            )
        else:
            elements[rng.randrange(1 << 16)] = _hostile_text(rng, rng.randrange(0, 12))
    return elements


def gen_dimse(rng: random.Random, k: int) -> Case:
    elements = _command_elements(rng)
    command = raw.command_set(elements)
    kind = rng.choice(["elements", "elements", "lengths", "truncated", "group"])
    if kind == "lengths":
        command = _flip(command, rng, rng.randrange(1, 4))
    elif kind == "truncated":
        command = command[: rng.randrange(0, len(command))]
    elif kind == "group":
        command = struct.pack("<HHLL", 0, 0, 4, rng.randrange(1 << 32)) + command[12:]
    context = 3 if elements.get(0x0002) == CT else 1
    pdvs = [(context, 0x03, command)]
    if elements.get(0x0800, 0x0101) != 0x0101:
        pdvs.append((context, 0x02, _datasets()[0][1][:64]))
    return Case("dimse", f"{kind}-{k}", [raw.p_data(pdvs)], setup="established")


_DATASETS: list[tuple[str, bytes]] = []  # (SOP Instance UID, implicit VR LE dataset)


def _datasets() -> list[tuple[str, bytes]]:
    if not _DATASETS:
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        from tests.support import dicom_factory
        from tests.support.scp_harness import encoded

        for k, ts in enumerate((ImplicitVRLittleEndian, ExplicitVRLittleEndian)):
            ds = dicom_factory.ct_image(rows=8, columns=8)
            # Fixed UIDs: the cases a seed generates do not change from run to run.
            ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.7433.14.1"
            ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7433.14.2"
            ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7433.14.3.{k}"
            _DATASETS.append((str(ds.SOPInstanceUID), encoded(ds, ts)))
    return _DATASETS


def _hostile_uid(rng: random.Random) -> bytes:
    return rng.choice(
        [
            b"../../../tmp/x",
            b"\x001.2.3",
            b" 1.2.3",
            b"1.2.3/4",
            b"9" * 70,
            b"",
            b"1..2",
            b"1.2.3\\4",
            "1.2.\u00e9".encode(),
            b"0" * 64,
            b"1.2.3.\x1b[31m",
        ]
    )


def _replace_uid(data: bytes, old: str, new: bytes) -> bytes:
    raw_old = old.encode()
    if len(raw_old) % 2:
        raw_old += b"\0"
    new = new + (b"\0" if len(new) % 2 else b"")
    at = data.find(raw_old)
    if at < 4:
        return data
    # implicit VR: the 4-byte length is just before the value
    return data[: at - 4] + struct.pack("<L", len(new)) + new + data[at + len(raw_old) :]


def gen_dataset(rng: random.Random, k: int) -> Case:
    datasets = _datasets()
    index = rng.randrange(len(datasets))
    sop_instance, data = datasets[index]
    context = 3 if index == 0 else 5
    kind = rng.choice(["flips", "truncated", "vr", "length", "uid", "uid"])
    if kind == "flips":
        data = _flip(data, rng, rng.randrange(1, 12))
    elif kind == "truncated":
        data = data[: rng.randrange(0, len(data))]
    elif kind == "vr" and index == 1:
        out = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(0, len(out) - 6)
            out[at + 4 : at + 6] = rng.choice([b"XX", b"SQ", b"UN", b"OB", b"\x00\x00", b"UI"])
        data = bytes(out)
    elif kind in ("vr", "length"):
        out = bytearray(data)
        at = rng.randrange(0, len(out) - 8)
        struct.pack_into("<L", out, at + 4, rng.choice([0xFFFFFFFF, 0, 1, rng.randrange(1 << 32)]))
        data = bytes(out)
    else:
        uid = _hostile_uid(rng)
        if index == 0:
            data = _replace_uid(data, sop_instance, uid)
        sop_instance = uid.decode("latin-1") if rng.random() < 0.5 else sop_instance
    command = raw.c_store_rq(sop_instance.replace("\\", "/"), message_id=k % 65536)
    p_data = raw.p_data([(context, 0x03, command)])
    # The data set in fragments no longer than max_pdu allows.
    fragments = [data[i : i + 16000] for i in range(0, max(len(data), 1), 16000)] or [b""]
    chunks = [p_data] + [
        raw.p_data([(context, 0x02 if i == len(fragments) - 1 else 0x00, fragment)])
        for i, fragment in enumerate(fragments)
    ]
    return Case("dataset", f"{kind}-{k}", chunks, setup="established")


def gen_connection(rng: random.Random, k: int) -> Case:
    rq = raw.associate_rq(contexts=ECHO_CONTEXTS)
    kind = rng.choice(
        [
            "close",
            "reset",
            "half-rq-close",
            "half-rq-reset",
            "half-pdata-close",
            "half-pdata-reset",
            "established-reset",
            "established-close",
            "trickle",
            "silent",
            "half-rq-silent",
        ]
    )
    half = rq[: rng.randrange(1, len(rq))]
    echo = raw.p_data([(1, 0x03, raw.c_echo_rq())])
    cases = {
        "close": Case("connection", "", [], end="close"),
        "reset": Case("connection", "", [], end="reset"),
        "half-rq-close": Case("connection", "", [half], end="close"),
        "half-rq-reset": Case("connection", "", [half], end="reset"),
        "half-pdata-close": Case("connection", "", [echo[:9]], "established", "close"),
        "half-pdata-reset": Case("connection", "", [echo[:9]], "established", "reset"),
        "established-reset": Case("connection", "", [], "established", "reset"),
        "established-close": Case("connection", "", [], "established", "close"),
        "trickle": Case(
            "connection", "", [rq[i : i + 7] for i in range(0, len(rq), 7)], pause=0.002
        ),
        "silent": Case("connection", "", [], end="silent"),
        "half-rq-silent": Case("connection", "", [half], end="silent"),
    }
    case = cases[kind]
    case.name = f"{kind}-{k}"
    return case


GENERATORS: list[tuple[Callable[[random.Random, int], Case], int]] = [
    (gen_associate, 25),
    (gen_framing, 22),
    (gen_dimse, 22),
    (gen_dataset, 22),
    (gen_connection, 9),
]


def generate(count: int, seed: int = 14) -> Iterator[Case]:
    rng = random.Random(seed)
    weights = [w for _, w in GENERATORS]
    for k in range(count):
        ((gen, _),) = rng.choices(GENERATORS, weights)
        yield gen(rng, k)


# --- the runner ----------------------------------------------------------------------


def _answer_name(answer: raw.Answer) -> str:
    if answer.kind == raw.ABORT:
        source, reason = answer.abort or (0, 0)
        return f"abort({source},{reason})"
    if answer.kind == raw.ASSOCIATE_RJ:
        result, source, reason = answer.reject or (0, 0, 0)
        return f"reject({result},{source},{reason})"
    if answer.kind == raw.P_DATA_TF:
        status = answer.dimse_status()
        return f"status 0x{status:04X}" if status is not None else "p-data"
    names = {raw.ASSOCIATE_AC: "accepted", raw.RELEASE_RP: "released"}
    return names.get(answer.kind, str(answer.kind))  # type: ignore[arg-type]


class Hang(Exception):
    pass


def run_case(port: int, case: Case) -> str:
    """Send ``case``; return its outcome's name (raises Hang when an answer is overdue)."""
    peer = RawPeer(port, timeout=ANSWER_WAIT)
    try:
        if case.setup == "established":
            answer = peer.associate(raw.associate_rq(contexts=STORE_CONTEXTS, max_pdu=16384))
            assert answer.kind == raw.ASSOCIATE_AC, f"setup of {case.name}: {answer}"
        for chunk in case.chunks:
            if not peer.send(chunk):
                break
            if case.pause:
                time.sleep(case.pause)
        if case.end == "close":
            return "closed by us"
        if case.end == "reset":
            return "reset by us"
        if case.end == "silent":
            answer = peer.read(HANDSHAKE_TIMEOUT + ANSWER_WAIT)
            if answer.kind == raw.SILENT:
                raise Hang(f"{case.name}: still open past the handshake timeout")
            return f"{_answer_name(answer)} at the deadline"
        return _read_outcome(peer, case)
    finally:
        peer.close()


def _read_outcome(peer: RawPeer, case: Case) -> str:
    first = peer.read(FIRST_WAIT)
    if first.kind == raw.SILENT:
        # Waiting for more (a message not complete yet) is allowed; a release must end it.
        if not peer.send(raw.release_rq()):
            return "closed"
        answer = peer.read(ANSWER_WAIT)
        if answer.kind == raw.SILENT:
            raise Hang(f"{case.name}: no answer to A-RELEASE-RQ")
        while answer.kind == raw.P_DATA_TF:  # a late DIMSE answer before the release's
            answer = peer.read(ANSWER_WAIT)
        return f"{_answer_name(answer)} after our release"
    outcome = _answer_name(first)
    if first.kind in (raw.ASSOCIATE_AC, raw.P_DATA_TF):
        if peer.send(raw.release_rq()):
            end = peer.read(ANSWER_WAIT)
            while end.kind == raw.P_DATA_TF:
                end = peer.read(ANSWER_WAIT)
            if end.kind == raw.SILENT:
                raise Hang(f"{case.name}: no answer to A-RELEASE-RQ after {outcome}")
    return outcome


def echo_seconds(port: int) -> float:
    started = time.monotonic()
    with RawPeer(port, timeout=5) as peer:
        answer = peer.associate(raw.associate_rq(contexts=ECHO_CONTEXTS))
        assert answer.kind == raw.ASSOCIATE_AC, answer
        peer.send(raw.p_data([(1, 0x03, raw.c_echo_rq())]))
        assert peer.read().dimse_status() == 0x0000
        elapsed = time.monotonic() - started
        peer.release()
    return elapsed


@dataclass
class FuzzReport:
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    hangs: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    slow_echoes: list[str] = field(default_factory=list)
    stray: list[Path] = field(default_factory=list)
    rss_start: float = 0.0
    rss_max: float = 0.0
    echo_max: float = 0.0
    cases: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"{self.cases} cases in {self.seconds:.1f} s"]
        for cls in sorted(self.counts):
            total = sum(self.counts[cls].values())
            out.append(f"{cls}: {total}")
            for outcome, n in self.counts[cls].most_common():
                out.append(f"    {n:5d}  {outcome}")
        out.append(
            f"crashes {len(self.crashes)}, hangs {len(self.hangs)}, stray files "
            f"{len(self.stray)}, C-ECHO over 1 s {len(self.slow_echoes)} (slowest "
            f"{self.echo_max * 1000:.0f} ms), listener RSS {self.rss_start:.0f} -> max "
            f"{self.rss_max:.0f} MiB"
        )
        return out


class FuzzRun:
    """Runs cases against one listener process and keeps the report."""

    def __init__(self, node: ScpChild) -> None:
        self.node = node
        self.report = FuzzReport()

    def warm_up(self) -> None:
        for _ in range(5):
            echo_seconds(self.node.port)
        self.report.rss_start = self.report.rss_max = self.node.wait_rss_settled()

    def run(self, cases: Iterator[Case]) -> FuzzReport:
        report = self.report
        started = time.monotonic()
        for case in cases:
            report.cases += 1
            try:
                outcome = run_case(self.node.port, case)
            except Hang as hang:
                report.hangs.append(str(hang))
                outcome = "HANG"
            report.counts[case.cls][outcome.split(" at ")[0]] += 1
            if not self.node.alive():
                report.crashes.append(case.name)
                break
            seconds = echo_seconds(self.node.port)
            report.echo_max = max(report.echo_max, seconds)
            if seconds >= 1.0:
                report.slow_echoes.append(f"{case.name}: {seconds:.2f} s")
            if report.cases % 10 == 0:
                report.rss_max = max(report.rss_max, self.node.rss())
        report.rss_max = max(report.rss_max, self.node.rss())
        report.seconds = time.monotonic() - started
        report.stray = self.stray_files()
        return report

    def stray_files(self) -> list[Path]:
        stray = self.node.stray_files()
        spool = self.node.spool
        for path in spool.rglob("*.dcm"):
            relative = path.relative_to(spool).as_posix()
            if not relative.startswith(".incoming/") and not SPOOLED.fullmatch(relative):
                stray.append(path)
        return stray
