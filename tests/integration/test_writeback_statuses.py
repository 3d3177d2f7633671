"""Write-back against a pynetdicom Storage SCP whose answers the test controls over loopback:
failure statuses are recorded and retried, warnings count as stored, and a SOP class the
peer does not take fails the job for good."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage  # type: ignore[attr-defined]
from sqlalchemy import select

from ivcontrast.config import Settings, load_settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import Job, JobState, Writeback
from ivcontrast.worker.service import Worker, build_handlers
from ivcontrast.writeback import enqueue_writeback
from tests.support.writeback_data import make_result, spool_series


class Peer:
    """A Storage SCP on a free loopback port that answers every C-STORE with ``status``."""

    def __init__(self, sop_classes: tuple[str, ...]) -> None:
        self.status = 0x0000
        self.abort_after: int | None = None  # abort the association after this many stored
        self.received: list[str] = []
        self.calling: list[str] = []
        ae = AE(ae_title="PEER")
        for sop_class in sop_classes:
            ae.add_supported_context(sop_class, ExplicitVRLittleEndian)
        self.server: Any = ae.start_server(
            ("127.0.0.1", 0),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._store)],
        )
        self.port = self.server.server_address[1]

    def _store(self, event: Any) -> int:
        self.calling.append(event.assoc.requestor.ae_title)
        if self.abort_after is not None and len(self.received) >= self.abort_after:
            event.assoc.abort()
            return 0xA700
        if self.status in (0x0000, 0xB000):
            self.received.append(event.request.AffectedSOPInstanceUID)
        return self.status

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None


@pytest.fixture
def peer() -> Iterator[Peer]:
    server = Peer((CTImageStorage, ComprehensiveSRStorage))
    yield server
    server.stop()


@pytest.fixture
def ct_only_peer() -> Iterator[Peer]:
    server = Peer((CTImageStorage,))
    yield server
    server.stop()


def setup(tmp_path: Path, port: int, count: int = 3) -> tuple[Settings, Database]:
    settings = load_settings(
        env={},
        overrides={
            "data_dir": str(tmp_path / "data"),
            "scp.ae_title": "IVC-NODE",
            "writeback.enabled": True,
            "writeback.backoff_seconds": 0.3,
            "writeback.max_attempts": 3,
            "writeback.destinations": [
                {
                    "kind": "dicom",
                    "name": "peer",
                    "ae_title": "PEER",
                    "host": "127.0.0.1",
                    "port": port,
                }
            ],
        },
    )
    db = Database(settings.db_url)
    db.upgrade()
    spooled = spool_series(db, settings.spool_path, count)
    with db.write() as session:
        result = make_result(spooled.series_id)
        session.add(result)
        assert enqueue_writeback(session, settings.writeback, result) == 1
    return settings, db


def run_worker(settings: Settings, db: Database) -> int:
    return Worker(settings, db, build_handlers(settings, db), sweep=False).run_until_idle()


def state(db: Database) -> tuple[Job, Writeback]:
    with db.session() as session:
        return session.scalars(select(Job)).one(), session.scalars(select(Writeback)).one()


def test_failure_status_is_recorded_and_retried_until_stored(peer: Peer, tmp_path: Path) -> None:
    settings, db = setup(tmp_path, peer.port)
    peer.status = 0xA700  # out of resources
    assert run_worker(settings, db) == 1
    job, row = state(db)
    assert (job.state, job.attempts) == (JobState.PENDING, 1)
    assert row.last_status == "0xA700" and row.instances_sent == 0 and not row.report_sent
    assert len(row.failures) == 4  # three copies and the report, each with its status
    assert all("0xA700" in reason for _uid, reason in row.failures)
    assert "4 of 4 objects not stored" in job.error and "0xA700" in job.error
    assert peer.calling[0] == "IVC-NODE"  # the node's own AE title by default

    peer.status = 0xB000  # coercion warning: stored
    time.sleep(0.35)
    assert run_worker(settings, db) == 1
    job, row = state(db)
    assert (job.state, job.outcome, job.attempts) == (JobState.DONE, "sent", 2)
    assert (row.instances_sent, row.report_sent, row.last_status, row.failures) == (
        3,
        True,
        None,
        None,
    )
    assert len(peer.received) == 4


def test_a_sop_class_the_peer_does_not_take_fails_for_good(
    ct_only_peer: Peer, tmp_path: Path
) -> None:
    settings, db = setup(tmp_path, ct_only_peer.port)
    assert run_worker(settings, db) == 1
    job, row = state(db)
    assert (job.state, job.attempts) == (JobState.FAILED, 1)
    assert row.instances_sent == 3 and not row.report_sent  # the copies went, the SR did not
    ((uid, reason),) = row.failures
    assert uid == row.report_sop_uid and "not accepted" in reason


def test_association_lost_mid_job_is_retried_and_completed(peer: Peer, tmp_path: Path) -> None:
    settings, db = setup(tmp_path, peer.port, count=3)
    peer.abort_after = 1
    assert run_worker(settings, db) == 1
    job, row = state(db)
    assert (job.state, job.attempts) == (JobState.PENDING, 1)
    assert row.instances_sent == 1 and "no C-STORE response" in (row.error or "")

    peer.abort_after = None
    time.sleep(0.35)
    assert run_worker(settings, db) == 1
    job, row = state(db)
    assert (job.state, row.instances_sent, row.report_sent) == (JobState.DONE, 3, True)
    # The retry sent the same UIDs again: the peer holds one series, not two.
    assert len(set(peer.received)) == 4


def test_unreachable_peer_is_retried(peer: Peer, tmp_path: Path) -> None:
    settings, db = setup(tmp_path, peer.port, count=1)
    peer.stop()
    assert run_worker(settings, db) == 1
    job, row = state(db)
    assert job.state == JobState.PENDING and "cannot connect" in (row.error or "")
