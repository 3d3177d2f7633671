"""Multi-host mode: listeners and workers as separate processes over one PostgreSQL store
and one shared spool, as on several hosts (each process has its own data directory).

Two ``ivcontrast scp`` listeners and three ``ivcontrast worker`` processes (each sweeping,
each classifying) receive 40 series from two concurrent senders (DCMTK storescu, one
association per series). Midway, one worker is killed with SIGKILL while it holds a lease.
Then: every instance acknowledged is indexed and on disk, every series is classified
exactly once, the dead worker's job was reaped and finished by another worker, and no job
is left pending, leased or failed.

The model is a rule package (``classify_data.write_rule_package``): real ONNX Runtime
inference through the worker's classify handler, at a cost that keeps the test to about a
minute on two cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pydicom
import pytest
from sqlalchemy import func, select

from ivcontrast.store.db import Database
from ivcontrast.store.models import (
    Association,
    Instance,
    Job,
    JobState,
    Result,
    Series,
    SeriesState,
)
from ivcontrast.store.models import Worker as WorkerRow
from tests.support import pg
from tests.support.classify_data import write_rule_package
from tests.support.deploy_harness import ivcontrast
from tests.support.node_process import NodeProcess, clean_env
from tests.support.scp_harness import DCMTK_ENV, dcmtk, parse_storescu, storescu_command

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SERIES = 40
SLICES = 14
LEASE_SECONDS = 4.0


def synth(out: Path) -> dict[str, list[Path]]:
    """40 small CT series; files per series UID."""
    from ivcontrast.cli import main

    args = ["synth", str(out), "-n", str(SERIES), "--matrix", "64", "--slices", str(SLICES)]
    assert main([*args, "--seed", "100", "-j", "2"]) == 0
    by_series: dict[str, list[Path]] = {}
    for path in sorted(out.rglob("*.dcm")):
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)
        by_series.setdefault(uid, []).append(path)
    assert len(by_series) == SERIES
    return by_series


class Sender(threading.Thread):
    """Sends each series on its own association with storescu, one after another."""

    def __init__(self, port: int, series: list[list[Path]], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.port = port
        self.series = series
        self.acknowledged: list[Path] = []
        self.failures: list[str] = []

    def run(self) -> None:
        for files in self.series:
            done = subprocess.run(
                storescu_command(self.port, files, calling=self.name),
                env={**os.environ, **DCMTK_ENV},
                capture_output=True,
                text=True,
                timeout=120,
            )
            output = done.stdout + done.stderr
            self.acknowledged += parse_storescu(output)
            if done.returncode != 0:
                self.failures.append(output[-2000:])


def leases_of(db: Database, owner: str) -> list[int]:
    with db.session() as session:
        return list(
            session.scalars(
                select(Job.id).where(Job.state == JobState.LEASED, Job.lease_owner == owner)
            )
        )


def kill_holding_a_lease(db: Database, worker: NodeProcess, timeout: float = 60) -> list[int]:
    """SIGKILL ``worker`` at a moment it holds a lease; returns the jobs it held.

    The process is frozen (SIGSTOP) first, so the check that it holds a lease cannot race
    with it releasing the job; if it holds none, it is thawed and we try again.
    """
    with db.session() as session:
        owner = session.scalar(select(WorkerRow.id).where(WorkerRow.pid == worker.pid))
    assert owner is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if leases_of(db, owner):
            os.kill(worker.pid, signal.SIGSTOP)
            held = leases_of(db, owner)
            if held:
                worker.kill()
                return held
            os.kill(worker.pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError(f"worker {owner} never held a lease")


def count(db: Database, *where: Any, model: Any = Series) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_two_listeners_three_workers_one_killed(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dcmtk("storescu")
    url = pg.create_database(postgres_url)
    db = Database(url)
    db.upgrade()
    spool = tmp_path / "shared-spool"  # the volume every host mounts
    model = tmp_path / "model"
    write_rule_package(model)
    series = synth(tmp_path / "ct")

    def host_env(host: str) -> dict[str, str]:
        return clean_env(
            {
                "IVCONTRAST_DATA_DIR": str(tmp_path / host),
                "IVCONTRAST_DATABASE_URL": url,
                "IVCONTRAST_SPOOL_DIR": str(spool),
                "IVCONTRAST_SCP_MIN_FREE_MB": "0",
                "IVCONTRAST_WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
                "IVCONTRAST_WORKER_REAP_SECONDS": "0.5",
                "IVCONTRAST_WORKER_SWEEP_SECONDS": "0.3",
                "IVCONTRAST_WORKER_POLL_SECONDS": "0.1",
                "IVCONTRAST_WORKER_SETTLE_SECONDS": "0.5",
                "IVCONTRAST_WORKER_QUIET_SECONDS": "20",
                "IVCONTRAST_CLASSIFIER_MODEL": str(model),
                "IVCONTRAST_CLASSIFIER_THREADS": "1",
            }
        )

    listeners = [
        NodeProcess(
            ivcontrast("scp", "--bind", "127.0.0.1", "--port", "0", "--processes", "1"),
            host_env(f"listener{i}"),
            tmp_path / f"listener{i}.log",
        )
        for i in (1, 2)
    ]
    workers = [
        NodeProcess(ivcontrast("worker"), host_env(f"worker{i}"), tmp_path / f"worker{i}.log")
        for i in (1, 2, 3)
    ]
    processes = [*listeners, *workers]
    started = time.monotonic()
    try:
        for process in processes:
            process.start()
        ports = [
            int(p.wait_for(r"listening on 127\.0\.0\.1:(\d+) as IVCONTRAST").group(1))
            for p in listeners
        ]
        for worker in workers:
            worker.wait_for(r"worker \S+ started; job kinds: check, classify")
        ready = time.monotonic()

        groups = list(series.values())
        senders = [
            Sender(ports[0], groups[0::2], "SENDER_A"),
            Sender(ports[1], groups[1::2], "SENDER_B"),
        ]
        for sender in senders:
            sender.start()

        # Midway: a quarter of the series classified, the rest still arriving or queued.
        deadline = time.monotonic() + 120
        while count(db, model=Result) < SERIES // 4:
            assert time.monotonic() < deadline, "classification did not start"
            time.sleep(0.05)
        victim = workers[0]
        held = kill_holding_a_lease(db, victim)
        killed_at = count(db, model=Result)

        for sender in senders:
            sender.join(180)
            assert not sender.is_alive()
        sent = time.monotonic()

        def settled() -> bool:
            done = count(db, Series.state.in_([SeriesState.CLASSIFIED]))
            open_jobs = count(db, Job.state != JobState.DONE, model=Job)
            return done == SERIES and open_jobs == 0

        deadline = time.monotonic() + 180
        while not settled():
            for process in [*listeners, *workers[1:]]:
                assert process.alive(), process.log()[-3000:]
            if time.monotonic() > deadline:
                with db.session() as session:
                    states = Counter(session.scalars(select(Series.state)))
                    by_kind = Counter(
                        (kind, state)
                        for kind, state in session.execute(select(Job.kind, Job.state))
                    )
                raise AssertionError(f"not settled: series {states}, jobs {by_kind}")
            time.sleep(0.2)
        finished = time.monotonic()

        for process in [*listeners, *workers[1:]]:
            assert process.stop(timeout=60) == 0, process.log()[-3000:]
    finally:
        for process in processes:
            if process.alive():
                process.kill()

    # Every instance a sender got Success for is indexed and on disk, in the shared spool.
    for sender in senders:
        assert not sender.failures, sender.failures[0]
    acknowledged = [path for sender in senders for path in sender.acknowledged]
    assert len(acknowledged) == SERIES * SLICES
    with db.session() as session:
        stored = {
            sop: path
            for sop, path in session.execute(select(Instance.sop_instance_uid, Instance.path))
        }
    for path in acknowledged:
        sop = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert sop in stored, path
        assert (spool / stored[sop]).read_bytes()[-64:] == path.read_bytes()[-64:]
    assert len(stored) == SERIES * SLICES

    with db.session() as session:
        # Every series classified exactly once: one version, one result, all jobs done.
        rows = session.execute(select(Series.series_uid, Series.version, Series.state)).all()
        assert {uid for uid, _, _ in rows} == set(series)
        assert all(version == 1 and state == SeriesState.CLASSIFIED for _, version, state in rows)
        results = Counter(session.execute(select(Result.series_id, Result.series_version)).all())
        assert len(results) == SERIES and set(results.values()) == {1}
        jobs = session.scalars(select(Job)).all()
        assert Counter(job.kind for job in jobs) == {"check": SERIES, "classify": SERIES}
        assert all(job.state == JobState.DONE for job in jobs)
        # The jobs the dead worker held were reaped and done by another worker.
        retried = [job for job in jobs if job.id in held]
        assert retried and all(job.attempts >= 2 for job in retried)
        # Both listeners took associations; every association ended cleanly.
        listeners_used = Counter(session.scalars(select(Association.listener)))
        assert len(listeners_used) == 2 and sum(listeners_used.values()) == SERIES
        assert Counter(session.scalars(select(Association.state))) == {"released": SERIES}
        # The surviving workers stopped cleanly; the killed one never did.
        stopped = session.scalars(select(WorkerRow.stopped_at).order_by(WorkerRow.started_at))
        assert sorted(s is not None for s in stopped) == [False, True, True]
    db.dispose()

    with capsys.disabled():
        print(
            f"\nmulti-host: {SERIES} series x {SLICES} slices, 2 listeners, 3 workers "
            f"(1 killed at {killed_at}/{SERIES} results, holding jobs {held}): "
            f"start {ready - started:.1f} s, sent {sent - ready:.1f} s, "
            f"all classified {finished - ready:.1f} s after the first association"
        )
