"""The raw spool: received instances as Part 10 files, durable before they are acknowledged.

Layout: ``<spool>/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``. Every path component is
a UID that passed :func:`is_valid_uid`, so nothing a sender writes can name a path.

A write goes to a temporary file in ``<spool>/.incoming`` (same file system), is fsynced,
renamed into place, and the directory is fsynced: after a crash a file is either complete
at its final path or absent there (a stale temporary file may remain; :meth:`Spool.clean_incoming`
removes it at the next start). A crash between the rename and the store's commit leaves a
file the store does not know: :func:`reconcile` indexes such files at start-up.

One writer per SOP Instance UID: :meth:`Spool.instance_lock` is held from the write to the
store's commit, across the threads of a process and the listener processes that share the
spool (a POSIX record lock on ``<spool>/.instance-locks``, one byte per stripe of UIDs), so
that the same instance re-sent at once on two associations cannot leave one sender's file
under the other's row.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ivcontrast import __version__
from ivcontrast.store.db import Database
from ivcontrast.store.ingest import EVENT_RECONCILED, indexed_files, record_instance
from ivcontrast.store.values import StoredFile

log = logging.getLogger(__name__)

UID_MAX_LENGTH = 64
_UID_RE = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")

# A UUID-derived UID (PS3.5 B.2): ivcontrast has no registered root of its own.
IMPLEMENTATION_CLASS_UID = "2.25.324941205995629469271182618020246621894"
IMPLEMENTATION_VERSION_NAME = f"IVCONTRAST_{__version__}"[:16]

INCOMING = ".incoming"
LOCK_FILE = ".instance-locks"  # a file at the spool's top, never a study folder
LOCK_STRIPES = 4096  # UIDs share a stripe by hash; few enough to keep one lock per stripe
SUFFIX = ".dcm"
MiB = 1 << 20
PREAMBLE = b"\0" * 128 + b"DICM"


def is_valid_uid(value: str) -> bool:
    """True for a DICOM UID: digits and dots, no empty or zero-led component, <= 64 chars."""
    return 0 < len(value) <= UID_MAX_LENGTH and _UID_RE.fullmatch(value) is not None


class SpoolError(OSError):
    """The spool cannot take the file."""


class SpoolFull(SpoolError):
    """Free space is below the configured minimum (answered with 0xA700)."""


def relative_path(study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
    """``<study>/<series>/<sop>.dcm``; raises ValueError naming the first invalid UID."""
    for what, value in (
        ("Study Instance UID", study_uid),
        ("Series Instance UID", series_uid),
        ("SOP Instance UID", sop_instance_uid),
    ):
        if not is_valid_uid(value):
            raise ValueError(f"{what} {value[:80]!r} is not a valid UID")
    return f"{study_uid}/{series_uid}/{sop_instance_uid}{SUFFIX}"


def file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_ae: str
) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group (explicit VR little endian)."""
    body = b"".join(
        (
            _element(0x0001, b"OB", b"\0\1"),
            _element(0x0002, b"UI", _ui(sop_class_uid)),
            _element(0x0003, b"UI", _ui(sop_instance_uid)),
            _element(0x0010, b"UI", _ui(transfer_syntax)),
            _element(0x0012, b"UI", _ui(IMPLEMENTATION_CLASS_UID)),
            _element(0x0013, b"SH", _text(IMPLEMENTATION_VERSION_NAME)),
            _element(0x0016, b"AE", _text(source_ae)) if source_ae else b"",
        )
    )
    return PREAMBLE + _element(0x0000, b"UL", struct.pack("<I", len(body))) + body


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2sHI", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _ui(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def _text(value: str) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


@dataclass(frozen=True)
class TempName:
    host: str
    pid: int


def parse_temp_name(name: str) -> TempName | None:
    """``<host>-<pid>-<random>.tmp`` -> (host, pid); None for any other name."""
    if not name.endswith(".tmp"):
        return None
    parts = name[: -len(".tmp")].rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return TempName(parts[0], int(parts[1]))


class InstanceLocks:
    """Exclusive locks by SOP Instance UID, across threads and processes.

    POSIX record locks belong to a process, so a thread lock per stripe comes first: one
    thread of a process at a time asks the kernel for a stripe's byte. The file is opened
    once per process and never closed while in use (closing any descriptor of it would
    drop every lock this process holds on it).
    """

    def __init__(self, path: Path, stripes: int = LOCK_STRIPES) -> None:
        self.path = path
        self.stripes = stripes
        self._threads = [threading.Lock() for _ in range(stripes)]
        self._open_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def stripe(self, uid: str) -> int:
        return zlib.crc32(uid.encode("ascii", "replace")) % self.stripes

    def _descriptor(self) -> int:
        with self._open_lock:
            if self._fd is None or self._pid != os.getpid():
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                self._pid = os.getpid()
            return self._fd

    @contextmanager
    def hold(self, uid: str) -> Iterator[None]:
        stripe = self.stripe(uid)
        with self._threads[stripe]:
            fd = self._descriptor()
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, stripe)
            try:
                yield
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, stripe)

    def close(self) -> None:
        with self._open_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class Spool:
    """Durable writes into the spool directory; one instance per process, thread-safe."""

    def __init__(self, root: Path, min_free_mb: int = 0, host: str | None = None) -> None:
        self.root = root
        self.incoming = root / INCOMING
        self.min_free_bytes = min_free_mb * MiB
        self.host = host or socket.gethostname()
        self._known_dirs: OrderedDict[str, None] = OrderedDict()
        self._dirs_lock = threading.Lock()
        self._locks = InstanceLocks(root / LOCK_FILE)

    def prepare(self) -> None:
        self.incoming.mkdir(parents=True, exist_ok=True)

    def instance_lock(self, sop_instance_uid: str) -> AbstractContextManager[None]:
        """Held from writing an instance's file to committing its row (one writer per UID)."""
        return self._locks.hold(sop_instance_uid)

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def check_room(self, nbytes: int) -> None:
        """Raise SpoolFull if writing ``nbytes`` would leave less than the minimum free."""
        free = self.free_bytes()
        if free - nbytes < self.min_free_bytes:
            raise SpoolFull(
                f"spool {self.root}: {free // MiB} MiB free, minimum {self.min_free_bytes // MiB} MiB"
            )

    def write(self, rel_path: str, meta: bytes, dataset: bytes | memoryview) -> StoredFile:
        """Write ``meta + dataset`` to ``rel_path`` durably; sha256 is of ``dataset`` alone."""
        digest = hashlib.sha256(dataset).hexdigest()
        size = len(meta) + len(dataset)
        self.check_room(size)
        final = self.root / rel_path
        tmp = self.incoming / f"{self.host}-{os.getpid()}-{uuid.uuid4().hex}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                _write_all(fd, (meta, dataset))
                _sync_data(fd)
            finally:
                os.close(fd)
            self._rename_into_place(tmp, final)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
                raise SpoolFull(f"spool {self.root}: no space left on device") from None
            raise
        return StoredFile(path=rel_path, size=size, sha256=digest)

    def _rename_into_place(self, tmp: Path, final: Path) -> None:
        parent = final.parent
        self._ensure_dir(parent)
        try:
            os.replace(tmp, final)
        except FileNotFoundError:
            # The directory went away (a clean-up elsewhere) since we cached it: recreate once.
            self._forget_dir(parent)
            self._ensure_dir(parent)
            os.replace(tmp, final)
        _fsync_dir(parent)

    def _ensure_dir(self, path: Path) -> None:
        key = str(path)
        with self._dirs_lock:
            if key in self._known_dirs:
                self._known_dirs.move_to_end(key)
                return
        missing = []
        probe = path
        while not probe.is_dir() and probe != self.root:
            missing.append(probe)
            probe = probe.parent
        for directory in reversed(missing):
            directory.mkdir(exist_ok=True)
            _fsync_dir(directory.parent)  # the new entry must survive a power loss too
        with self._dirs_lock:
            self._known_dirs[key] = None
            if len(self._known_dirs) > 4096:
                self._known_dirs.popitem(last=False)

    def _forget_dir(self, path: Path) -> None:
        with self._dirs_lock:
            self._known_dirs.pop(str(path), None)

    def remove(self, rel_path: str) -> None:
        (self.root / rel_path).unlink(missing_ok=True)

    def clean_incoming(
        self, is_alive: Callable[[int], bool], max_age: timedelta = timedelta(hours=1)
    ) -> int:
        """Delete temporary files left by dead processes of this host, or older than max_age.

        Files of live processes (another listener on this host) are kept; files of other
        hosts sharing the spool are only removed once they are clearly stale.
        """
        removed = 0
        if not self.incoming.is_dir():
            return 0
        cutoff = time.time() - max_age.total_seconds()
        for entry in os.scandir(self.incoming):
            name = parse_temp_name(entry.name)
            try:
                old = entry.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue
            dead = name is not None and name.host == self.host and not is_alive(name.pid)
            if old or dead:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
        if removed:
            log.info("removed %d stale temporary files from %s", removed, self.incoming)
        return removed

    def series_files(self) -> Iterator[tuple[str, list[tuple[str, float]]]]:
        """Each series folder's UID with its files as (relative path, mtime)."""
        for study in _subdirs(self.root):
            if study.name == INCOMING:
                continue
            for series in _subdirs(Path(study.path)):
                files = []
                for entry in os.scandir(series.path):
                    if entry.name.endswith(SUFFIX) and entry.is_file():
                        rel = f"{study.name}/{series.name}/{entry.name}"
                        files.append((rel, entry.stat().st_mtime))
                yield series.name, files


def _subdirs(path: Path) -> list[os.DirEntry[str]]:
    try:
        return [e for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _write_all(fd: int, parts: Sequence[bytes | memoryview]) -> None:
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


# fdatasync flushes the data and what is needed to read it back (size, blocks) but not
# the times: about 10% cheaper than fsync here. Not every platform has it.
_sync_data = getattr(os, "fdatasync", os.fsync)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def reconcile(spool: Spool, db: Database) -> int:
    """Index spool files the store does not know (or knows an older version of).

    A listener killed between renaming a file into place and committing its row leaves such
    a file; it was never acknowledged, but it is complete, so it is indexed rather than lost.
    Returns how many files were indexed.
    """
    indexed = 0
    # One series at a time: the store's view of a whole large spool need not fit in memory.
    for series_uid, files in spool.series_files():
        known = indexed_files(db, series_uid)
        for rel, mtime in files:
            seen = known.get(rel)
            # A recorded file is never newer than its row; a newer one was replaced since.
            if seen is not None and mtime <= seen[0].timestamp() + 1.0:
                continue
            # As a listener would: no other writer of this instance meanwhile.
            with spool.instance_lock(Path(rel).name.removesuffix(SUFFIX)):
                indexed += _index_file(spool, db, rel, seen)
    if indexed:
        log.info("reconcile: indexed %d spool files the store did not know", indexed)
    return indexed


def _index_file(spool: Spool, db: Database, rel: str, seen: tuple[datetime, str] | None) -> int:
    """1 if the file at ``rel`` was indexed; 0 if it is unreadable or already known."""
    from ivcontrast.scp.header import HeaderError, instance_header, read_file_header

    path = spool.root / rel
    try:
        ds, ts = read_file_header(path)
        header = instance_header(ds, ts)
        expected = relative_path(header.study_uid, header.series_uid, header.sop_instance_uid)
        if rel != expected:
            raise HeaderError(f"{rel}: its UIDs do not match its path")
        raw = path.read_bytes()
        meta_end = 132 + 12 + struct.unpack_from("<I", raw, 140)[0]
        stored = StoredFile(rel, len(raw), hashlib.sha256(raw[meta_end:]).hexdigest())
    except (HeaderError, ValueError, OSError, struct.error) as exc:
        log.warning("reconcile: skipping %s: %s", rel, exc)
        return 0
    if seen is not None and stored.sha256 == seen[1]:
        return 0  # re-sent with identical bytes: rewritten, nothing new
    record_instance(db, header, stored, None, event_kind_new=EVENT_RECONCILED)
    return 1
