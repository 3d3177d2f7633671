"""Event handlers of the listener: association bookkeeping, C-ECHO and C-STORE.

The C-STORE handler persists and records, then answers; nothing else runs on the
association's thread. It reads only the header of the dataset (never its pixel data),
writes the received bytes to the spool durably, indexes the instance, and only then
returns Success; the write and the index happen under the spool's lock for that SOP
Instance UID, so a file and its row always describe the same bytes. Every failure has its own status, and nothing raised here can end the
association: an unexpected exception is logged and answered with 0xC211.

Logs name UIDs and association ids, never patient names or IDs.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from io import BytesIO
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from ivcontrast.scp.access import AccessPolicy
from ivcontrast.scp.header import HeaderError, instance_header, read_header
from ivcontrast.scp.spool import Spool, SpoolFull, file_meta, is_valid_uid, relative_path
from ivcontrast.store import ingest
from ivcontrast.store.db import Database
from ivcontrast.store.models import AssociationState
from ivcontrast.store.values import AssociationInfo, InstanceHeader, Outcome, RecordResult

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # spool below its free-space minimum
CANNOT_STORE = 0xA701  # the spool write failed (I/O error, read-only, permissions)
SOP_CLASS_MISMATCH = 0xA900  # dataset SOP Class differs from the presentation context's
CANNOT_UNDERSTAND = 0xC210  # the dataset header cannot be parsed
PROCESSING_FAILURE = 0xC211  # unexpected error (logged); the sender may retry
INVALID_UID = 0xC212  # a Study/Series/SOP Instance UID is missing or not a valid UID
INSTANCE_MISMATCH = 0xC213  # dataset SOP Instance UID differs from the request's


class StoreFailure(Exception):
    """A C-STORE that gets a failure status; ``reason`` is logged (no patient data)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ListenerHandlers:
    """The handlers one listener process binds to its association server."""

    def __init__(self, db: Database, spool: Spool, policy: AccessPolicy, listener_id: str) -> None:
        self.db = db
        self.spool = spool
        self.policy = policy
        self.listener_id = listener_id
        self._ids: dict[int, str] = {}  # id(Association) -> our association id
        self._lock = threading.Lock()

    def bindings(self) -> list[tuple[evt.EventType, Callable[[Event], Any]]]:
        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_ACCEPTED, self.on_accepted),
            (evt.EVT_REJECTED, self.on_rejected),
            (evt.EVT_RELEASED, self.on_released),
            (evt.EVT_ABORTED, self.on_aborted),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
        ]

    # --- associations -----------------------------------------------------------------

    def _info(self, event: Event, association_id: str) -> AssociationInfo:
        assoc = event.assoc
        rq = assoc.requestor.primitive
        return AssociationInfo(
            id=association_id,
            listener=self.listener_id,
            calling_ae=str(rq.calling_ae_title if rq else assoc.requestor.ae_title).strip(),
            called_ae=str(rq.called_ae_title if rq else assoc.acceptor.ae_title).strip(),
            peer_host=str(assoc.requestor.address),
            peer_port=int(assoc.requestor.port) if assoc.requestor.port else None,
        )

    def on_requested(self, event: Event) -> None:
        """Apply the access policy before pynetdicom negotiates; reject if it says so."""
        info = self._info(event, str(uuid.uuid4()))
        rejection = self.policy.check(info.calling_ae, info.called_ae, info.peer_host)
        if rejection is None:
            return
        log.warning(
            "association %s from %s:%s rejected: %s",
            info.id,
            info.peer_host,
            info.peer_port,
            rejection.reason,
        )
        event.assoc.acse.send_reject(rejection.result, rejection.source, rejection.reason_code)
        self._record(ingest.reject_association, info, rejection.reason)
        # As pynetdicom does after its own rejections: wait until the A-ASSOCIATE-RJ is out
        # and the peer has closed the connection (or the ARTIM timer expired).
        event.assoc.kill()

    def on_rejected(self, event: Event) -> None:
        """pynetdicom rejected on its own (too many associations): record it."""
        rj = event.assoc.acceptor.primitive
        reason = (
            f"rejected by the association server (result {rj.result}, "
            f"source {rj.result_source}, reason {rj.diagnostic})"
            if rj is not None
            else "rejected by the association server"
        )
        info = self._info(event, str(uuid.uuid4()))
        log.warning("association %s from %s rejected: %s", info.id, info.peer_host, reason)
        self._record(ingest.reject_association, info, reason)

    def on_accepted(self, event: Event) -> None:
        info = self._info(event, str(uuid.uuid4()))
        with self._lock:
            self._ids[id(event.assoc)] = info.id
        log.info(
            "association %s accepted: %s -> %s from %s:%s",
            info.id,
            info.calling_ae,
            info.called_ae,
            info.peer_host,
            info.peer_port,
        )
        self._record(ingest.open_association, info)

    def on_released(self, event: Event) -> None:
        self._close(event, AssociationState.RELEASED, None)

    def on_aborted(self, event: Event) -> None:
        by_us = bool(getattr(event.assoc, "_sent_abort", False))
        reason = "aborted by this listener" if by_us else "aborted by the peer or the network"
        self._close(event, AssociationState.ABORTED, reason)

    def _close(self, event: Event, state: AssociationState, reason: str | None) -> None:
        with self._lock:
            association_id = self._ids.pop(id(event.assoc), None)
        if association_id is None:
            return
        log.info("association %s %s", association_id, state)
        try:
            ingest.close_association(self.db, association_id, state, reason)
        except Exception:
            log.exception("association %s: cannot record that it %s", association_id, state)

    def association_id(self, event: Event) -> str | None:
        return self._ids.get(id(event.assoc))

    def open_association_ids(self) -> list[str]:
        with self._lock:
            return list(self._ids.values())

    def _record(self, fn: Callable[..., None], *args: Any) -> None:
        # Bookkeeping must never break the association: a store outage is logged.
        try:
            fn(self.db, *args)
        except Exception:
            log.exception("cannot record association in the store")

    # --- services -----------------------------------------------------------------------

    def on_echo(self, event: Event) -> int:
        return SUCCESS

    def on_store(self, event: Event) -> int:
        association_id = self.association_id(event)
        request = cast(C_STORE, event.request)
        started = time.perf_counter()
        try:
            status = self._store(event, association_id)
        except StoreFailure as failure:
            status = failure.status
            log.warning(
                "C-STORE %s on association %s: status 0x%04X: %s",
                request.AffectedSOPInstanceUID,
                association_id,
                failure.status,
                failure.reason,
            )
        except Exception:
            status = PROCESSING_FAILURE
            log.exception(
                "C-STORE %s on association %s: unexpected error, status 0x%04X",
                request.AffectedSOPInstanceUID,
                association_id,
                status,
            )
        if status != SUCCESS and association_id is not None:
            self._record(ingest.count_failure, association_id)
        log.debug(
            "C-STORE %s on association %s: 0x%04X in %.1f ms",
            request.AffectedSOPInstanceUID,
            association_id,
            status,
            (time.perf_counter() - started) * 1000,
        )
        return status

    def _store(self, event: Event, association_id: str | None) -> int:
        request = cast(C_STORE, event.request)
        context = event.context
        transfer_syntax = str(context.transfer_syntax)
        data = cast(BytesIO, request.DataSet)
        try:
            ds = read_header(data, transfer_syntax)
        except HeaderError as exc:
            raise StoreFailure(CANNOT_UNDERSTAND, str(exc)[:300]) from None
        header = instance_header(ds, transfer_syntax)

        if not header.sop_class_uid:
            raise StoreFailure(SOP_CLASS_MISMATCH, "dataset has no SOP Class UID")
        if header.sop_class_uid != context.abstract_syntax:
            raise StoreFailure(
                SOP_CLASS_MISMATCH,
                f"dataset SOP Class {header.sop_class_uid[:64]} does not match "
                f"the presentation context's {context.abstract_syntax}",
            )
        for what, value in (
            ("SOP Instance UID", header.sop_instance_uid),
            ("Study Instance UID", header.study_uid),
            ("Series Instance UID", header.series_uid),
        ):
            if not value:
                raise StoreFailure(INVALID_UID, f"dataset has no {what}")
            if not is_valid_uid(value):
                raise StoreFailure(INVALID_UID, f"{what} {value[:80]!r} is not a valid UID")
        requested = str(request.AffectedSOPInstanceUID or "").rstrip("\0 ")
        if header.sop_instance_uid != requested:
            raise StoreFailure(
                INSTANCE_MISMATCH,
                f"dataset SOP Instance UID {header.sop_instance_uid} differs from the "
                f"request's {requested[:64]}",
            )
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        meta = file_meta(header.sop_class_uid, header.sop_instance_uid, transfer_syntax, calling_ae)
        # One writer per SOP Instance UID from the file to its row: the same instance sent at
        # once on two associations (or to two listener processes) must not leave one
        # sender's file under the other's row.
        with self.spool.instance_lock(header.sop_instance_uid):
            result = self._persist(header, meta, data, association_id)
        if result.outcome is not Outcome.NEW or result.series_reopened:
            log.info(
                "instance %s %s (series %s%s) on association %s",
                header.sop_instance_uid,
                result.outcome,
                header.series_uid,
                f" re-opened as version {result.series_version}" if result.series_reopened else "",
                association_id,
            )
        return SUCCESS

    def _persist(
        self, header: InstanceHeader, meta: bytes, data: BytesIO, association_id: str | None
    ) -> RecordResult:
        """Write the file durably, then record it; a file the store did not take is removed."""
        rel = relative_path(header.study_uid, header.series_uid, header.sop_instance_uid)
        existed = (self.spool.root / rel).exists()
        with data.getbuffer() as body:
            try:
                stored = self.spool.write(rel, meta, body)
            except SpoolFull as exc:
                raise StoreFailure(OUT_OF_RESOURCES, str(exc)) from None
            except OSError as exc:
                raise StoreFailure(CANNOT_STORE, f"spool write failed: {exc}") from None
        try:
            result = ingest.record_instance(self.db, header, stored, association_id)
        except Exception:
            if not existed:
                # Not acknowledged, so not kept: the sender will retry.
                self.spool.remove(rel)
            raise
        if result.stale_path:
            self.spool.remove(result.stale_path)
        return result
