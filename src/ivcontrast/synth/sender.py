"""Send DICOM files to any AE with several parallel associations (C-STORE SCU).

Files are scanned first (file meta only): their SOP classes and transfer syntaxes decide
the presentation contexts proposed, and an unreadable file becomes a failure without
stopping the others. Each association runs in a thread that takes files from a shared
queue and streams them from disk (pynetdicom's chunked send, no decoding).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.errors import InvalidDicomError
from pydicom.filereader import dcmread, read_file_meta_info
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

log = logging.getLogger(__name__)

UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)
MAX_CONTEXTS = 128


@dataclass(frozen=True)
class Failure:
    """One file that was not stored: its path, the peer's status (if any) and why."""

    path: str
    status: int | None
    reason: str


@dataclass
class SendReport:
    files: int = 0
    sent: int = 0
    warnings: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    associations: int = 0
    not_dicom: int = 0  # files in the folders that are not DICOM: left out, not failures
    failures: list[Failure] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and self.sent == self.files


@dataclass(frozen=True)
class Item:
    path: Path
    sop_class: str
    transfer_syntax: str
    size: int


def find_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, and the DICOM files under the folders named (sorted, no
    dot-files). In folders, files without the DICOM preamble (a manifest, a preview PNG)
    are left out; see ``not_dicom``. A name that does not exist raises FileNotFoundError.
    """
    return _walk(paths)[0]


def not_dicom(paths: Iterable[str | Path]) -> list[Path]:
    """The files under the folders named that ``find_files`` leaves out."""
    return _walk(paths)[1]


def _walk(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    found: list[Path] = []
    skipped: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith("."):
                        path = Path(root) / name
                        (found if _has_preamble(path) else skipped).append(path)
        elif p.exists():
            found.append(p)  # named explicitly: tried, and reported if it is not DICOM
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return found, skipped


def _has_preamble(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return True  # unreadable: let scan() report it with the reason


def scan(files: Sequence[Path]) -> tuple[list[Item], list[Failure]]:
    """Read each file's meta information; unreadable or non-DICOM files are failures."""
    items: list[Item] = []
    failures: list[Failure] = []
    for path in files:
        try:
            meta = read_file_meta_info(path)
            items.append(
                Item(
                    path,
                    str(meta.MediaStorageSOPClassUID),
                    str(meta.TransferSyntaxUID),
                    path.stat().st_size,
                )
            )
        except (
            OSError,
            ValueError,
            AttributeError,
            EOFError,
            KeyError,
            struct.error,
            InvalidDicomError,
        ) as exc:
            failures.append(Failure(str(path), None, f"not a readable DICOM file: {exc}"))
    return items, failures


def contexts_for(items: Sequence[Item]) -> list[tuple[str, list[str]]]:
    """Presentation contexts: one per (SOP class, transfer syntax) the files use, each
    with that one syntax, so the peer cannot pick another; SOP classes with uncompressed
    files also get the two little-endian syntaxes, to which such files can be converted."""
    wanted: set[tuple[str, str]] = set()
    for item in items:
        wanted.add((item.sop_class, item.transfer_syntax))
        if item.transfer_syntax in UNCOMPRESSED:
            wanted.add((item.sop_class, ExplicitVRLittleEndian))
            wanted.add((item.sop_class, ImplicitVRLittleEndian))
    out = [(sop, [ts]) for sop, ts in sorted(wanted)]
    if len(out) > MAX_CONTEXTS:
        raise ValueError(
            f"the files need {len(out)} presentation contexts; one association allows {MAX_CONTEXTS}"
        )
    return out


class Sender:
    """C-STORE SCU for one destination; ``send`` may be called more than once."""

    def __init__(
        self,
        host: str,
        port: int,
        called_ae: str = "ANY-SCP",
        calling_ae: str = "IVCONTRAST-SCU",
        associations: int = 1,
        timeout: float = 30.0,
        max_pdu: int = 0,
    ) -> None:
        if associations < 1:
            raise ValueError(f"associations: {associations} must be at least 1")
        self.host = host
        self.port = port
        self.called_ae = called_ae
        self.calling_ae = calling_ae
        self.associations = associations
        self.timeout = timeout
        self.max_pdu = max_pdu

    def send(
        self,
        paths: Iterable[str | Path],
        progress: Callable[[int], None] | None = None,
    ) -> SendReport:
        """Send every file under ``paths``; ``progress(n)`` is called as files finish."""
        files, skipped = _walk(paths)
        report = SendReport(files=len(files), not_dicom=len(skipped))
        items, failures = scan(files)
        report.failures.extend(failures)
        if progress is not None and failures:
            progress(len(failures))
        if not items:
            return report
        contexts = contexts_for(items)
        work: queue.Queue[Item] = queue.Queue()
        for item in items:
            work.put(item)
        n = min(self.associations, len(items))
        state = _State(threads=n)
        start = time.perf_counter()
        threads = [
            threading.Thread(
                target=self._worker,
                args=(contexts, work, report, state, progress),
                name=f"c-store-{i}",
                daemon=True,
            )
            for i in range(n)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        report.seconds = time.perf_counter() - start
        return report

    def _associate(self, contexts: list[tuple[str, list[str]]]):
        from pynetdicom import AE, _config

        # Stream each file's encoded dataset from disk instead of decoding it.
        _config.STORE_SEND_CHUNKED_DATASET = True
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = self.timeout
        ae.dimse_timeout = self.timeout
        ae.network_timeout = self.timeout
        ae.maximum_pdu_size = self.max_pdu
        for sop, syntaxes in contexts:
            ae.add_requested_context(sop, syntaxes)
        assoc = ae.associate(self.host, self.port, ae_title=self.called_ae)
        if assoc.is_established:
            # Without TCP_NODELAY, Nagle and delayed ACKs stall each small PDU ~40 ms.
            sock = assoc.dul.socket.socket if assoc.dul.socket else None
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return assoc

    def _worker(
        self,
        contexts: list[tuple[str, list[str]]],
        work: queue.Queue[Item],
        report: SendReport,
        state: _State,
        progress: Callable[[int], None] | None,
    ) -> None:
        """One association: take files until the queue is empty.

        A thread that cannot (re)connect leaves the files to the others; the last one
        standing records the remaining files as failed, with the reason.
        """
        assoc = self._associate(contexts)
        if not assoc.is_established:
            self._give_up(work, report, state, progress, _refusal(assoc))
            return
        with state.lock:
            report.associations += 1
        while True:
            try:
                item = work.get_nowait()
            except queue.Empty:
                break
            if not assoc.is_established:
                assoc = self._associate(contexts)
                if not assoc.is_established:
                    reason = _refusal(assoc)
                    self._record(report, state, progress, Failure(str(item.path), None, reason))
                    self._give_up(work, report, state, progress, reason)
                    return
                with state.lock:
                    report.associations += 1
            self._store(assoc, item, report, state, progress)
        if assoc.is_established:
            assoc.release()

    def _give_up(
        self,
        work: queue.Queue[Item],
        report: SendReport,
        state: _State,
        progress: Callable[[int], None] | None,
        reason: str,
    ) -> None:
        log.warning("association to %s:%d (%s): %s", self.host, self.port, self.called_ae, reason)
        with state.lock:
            state.dead += 1
            last = state.dead == state.threads
        if not last:
            return
        while True:
            try:
                item = work.get_nowait()
            except queue.Empty:
                return
            self._record(report, state, progress, Failure(str(item.path), None, reason))

    def _store(self, assoc, item: Item, report: SendReport, state: _State, progress) -> None:
        try:
            if _accepted(assoc, item.sop_class, item.transfer_syntax):
                status = assoc.send_c_store(item.path)
            elif item.transfer_syntax in UNCOMPRESSED and _accepted(assoc, item.sop_class, None):
                # the peer takes another uncompressed syntax: decode and let pynetdicom convert
                status = assoc.send_c_store(dcmread(item.path))
            else:
                reason = (
                    f"not sent: the peer accepted no presentation context for "
                    f"{item.sop_class} in {item.transfer_syntax}"
                )
                self._record(report, state, progress, Failure(str(item.path), None, reason))
                return
        except ValueError as exc:
            self._record(report, state, progress, Failure(str(item.path), None, f"not sent: {exc}"))
            return
        except (OSError, AttributeError) as exc:
            self._record(report, state, progress, Failure(str(item.path), None, f"not sent: {exc}"))
            return
        code = getattr(status, "Status", None)
        if code is None:
            reason = "no response (association aborted or timed out)"
            self._record(report, state, progress, Failure(str(item.path), None, reason))
            return
        code = int(code)
        if code == 0x0000 or code & 0xF000 == 0xB000:
            with state.lock:
                report.sent += 1
                report.bytes_sent += item.size
                if code != 0:
                    report.warnings += 1
            if progress is not None:
                progress(1)
            return
        comment = getattr(status, "ErrorComment", None)
        reason = f"status 0x{code:04X}" + (f": {comment}" if comment else "")
        self._record(report, state, progress, Failure(str(item.path), code, reason))

    @staticmethod
    def _record(report: SendReport, state: _State, progress, failure: Failure) -> None:
        with state.lock:
            report.failures.append(failure)
        log.warning("%s: %s", failure.path, failure.reason)
        if progress is not None:
            progress(1)


@dataclass
class _State:
    """Shared by the association threads of one send."""

    threads: int
    dead: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _accepted(assoc, sop_class: str, syntax: str | None) -> bool:
    """Whether the association has an accepted context for the SOP class in ``syntax``
    (None: in any uncompressed syntax)."""
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax != sop_class:
            continue
        ts = cx.transfer_syntax[0]
        if ts == syntax or (syntax is None and ts in UNCOMPRESSED):
            return True
    return False


def _refusal(assoc) -> str:
    if assoc.is_rejected:
        rsp = assoc.acceptor.primitive
        result = getattr(rsp, "result", None)
        diag = getattr(rsp, "diagnostic", None)
        return f"association rejected (result {result}, reason {diag})"
    if assoc.is_aborted:
        return "association aborted by the peer"
    return "could not connect"
