"""The classify job: store -> classifier -> result row, with a fixed-rule model package.

Series are synthetic, written into a spool and indexed by the listener's own ingest code;
the real worker completes them, checks eligibility and classifies them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom
import pytest
from sqlalchemy import select, update

from ivcontrast.classifier.backends import PrefetchPlan, prefetch_plan
from ivcontrast.classifier.dicom_series import DicomSeries
from ivcontrast.classifier.engine import Classifier
from ivcontrast.classifier.package import ModelPackage
from ivcontrast.classifier.pipeline import prepare_ahead
from ivcontrast.classifier.preprocess import PreprocessConfig, plan_samples
from ivcontrast.classifier.tags import tag_status
from ivcontrast.clock import ManualClock
from ivcontrast.config import Settings, load_settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import Job, JobState, Result, Series, SeriesState, utcnow
from ivcontrast.store.queue import JobQueue, LeaseLost, enqueue, reap_expired
from ivcontrast.synth import SeriesSpec
from ivcontrast.vocabulary import Label
from ivcontrast.worker.classify import ClassifySeries, Prefetcher, load_classifier
from ivcontrast.worker.jobs import CHECK, CLASSIFY
from ivcontrast.worker.service import Worker, build_handlers
from tests.support.classify_data import (
    SpooledSynth,
    corrupt_pixel_data,
    spool_synth,
    write_rule_package,
)


def node_settings(tmp_path: Path, model: Path | None, **extra: Any) -> Settings:
    overrides: dict[str, Any] = {
        "data_dir": str(tmp_path / "node"),
        "classifier.model": str(model) if model else str(tmp_path / "no-such-model"),
        "classifier.threads": 1,
        "worker.quiet_seconds": 0,
        "worker.settle_seconds": 0,
        "worker.retry_backoff_seconds": 0,
    }
    overrides.update(extra)
    return load_settings(env={}, overrides=overrides)


@dataclass
class Node:
    settings: Settings
    db: Database
    package: ModelPackage

    @property
    def spool(self) -> Path:
        return self.settings.spool_path

    def add(self, seed: int, **spec: Any) -> SpooledSynth:
        defaults: dict[str, Any] = {"region": "chest", "phase": "arterial", "matrix": 48}
        return spool_synth(self.db, self.spool, SeriesSpec(seed=seed, slices=12, **defaults | spec))

    def worker(self) -> Worker:
        return Worker(self.settings, self.db, build_handlers(self.settings, self.db))

    def series(self, uid: str) -> Series:
        with self.db.session() as session:
            return session.scalars(select(Series).where(Series.series_uid == uid)).one()

    def results(self, uid: str) -> list[Result]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(Result)
                    .join(Series)
                    .where(Series.series_uid == uid)
                    .order_by(Result.series_version)
                )
            )

    def classify_jobs(self, uid: str) -> list[Job]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(Job)
                    .join(Series, Series.id == Job.series_id)
                    .where(Series.series_uid == uid, Job.kind == CLASSIFY)
                    .order_by(Job.id)
                )
            )


def make_node(tmp_path: Path, config: PreprocessConfig | None = None, **package: Any) -> Node:
    pkg = write_rule_package(tmp_path / "model", config, **package)
    settings = node_settings(tmp_path, pkg.path)
    db = Database(settings.db_url)
    db.upgrade()
    return Node(settings, db, pkg)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path)
    yield made
    made.db.dispose()


def test_a_complete_series_gets_one_result_row(node: Node) -> None:
    spooled = node.add(seed=1)
    assert node.worker().run_until_idle() >= 2  # check, then classify

    series = node.series(spooled.series_uid)
    assert series.state == SeriesState.CLASSIFIED and series.error is None
    [result] = node.results(spooled.series_uid)
    [job] = node.classify_jobs(spooled.series_uid)
    assert (job.state, job.outcome, job.attempts) == (JobState.DONE, "classified", 1)

    # The same files through the classifier directly give the same call.
    direct = Classifier.from_settings(node.settings.classifier).classify_series(spooled.paths)
    assert result.probability == pytest.approx(direct.probability, abs=1e-6)
    assert result.label == Label.of(direct.contrast)
    assert result.label == ("contrast" if result.probability >= result.threshold else "no_contrast")
    assert (result.model_name, result.model_version) == ("rule", "0.0.1")
    assert result.model_sha256 == node.package.card_sha256
    assert (result.threshold, result.aggregation) == (0.5, "mean")
    assert result.series_version == 1
    curve = result.slice_probabilities
    assert curve is not None and result.slices_used == direct.slices_used == len(curve)
    z = [z for z, _ in curve]
    assert z == sorted(z) and z == pytest.approx(list(direct.slice_z_mm), abs=1e-3)
    assert [p for _, p in curve] == pytest.approx(list(direct.slice_probabilities))
    agent = pydicom.dcmread(spooled.paths[0]).get("ContrastBolusAgent") or None
    assert result.original_contrast_agent == agent
    assert result.tag_status == tag_status(agent, result.network_label == "contrast")
    assert result.device == "onnxruntime-cpu"
    load, prep, infer = result.load_seconds, result.preprocess_seconds, result.inference_seconds
    assert load is not None and prep is not None and infer is not None
    assert load > 0 and prep > 0 and infer > 0
    physics = result.physics_seconds
    assert physics is not None and physics >= 0
    assert result.total_seconds == pytest.approx(load + prep + infer + physics)


def set_agent(paths: list[Path], agent: str | None) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        if agent is None:
            ds.pop("ContrastBolusAgent", None)
        else:
            ds.ContrastBolusAgent = agent
        ds.save_as(path, enforce_file_format=True)


def test_tag_status_compares_the_original_tag_with_the_call(tmp_path: Path) -> None:
    # weight 0, bias 5: every slice p = 0.993, so every series is called contrast.
    node = make_node(tmp_path, weight=0.0, bias=5.0)
    cases = {"OMNIPAQUE 350": "agrees", "N": "disagrees", "none": "disagrees", None: "missing"}
    uids = {}
    for seed, agent in enumerate(cases, start=1):
        spooled = node.add(seed=seed)
        set_agent(spooled.paths, agent)  # before the worker reads them
        uids[agent] = spooled.series_uid
    node.worker().run_until_idle()
    for agent, expected in cases.items():
        [result] = node.results(uids[agent])
        assert result.network_label == "contrast" and result.probability == pytest.approx(0.9933, 1e-3)
        assert (result.original_contrast_agent, result.tag_status) == (agent, expected)


def test_a_corrupt_instance_fails_its_series_not_the_worker(tmp_path: Path) -> None:
    node = make_node(tmp_path, PreprocessConfig(size=32, num_slices=8))
    bad = node.add(seed=1)
    good = node.add(seed=2, region="headneck", phase="none")
    # Corrupt a slice the model input is sampled from, so it is decoded.
    z = DicomSeries.open(bad.paths).geometry.z_mm
    index = int(plan_samples(z, 8)[3][0])
    victim = DicomSeries.open(bad.paths).headers[index].path
    corrupt_pixel_data(victim)

    node.worker().run_until_idle()

    series = node.series(bad.series_uid)
    assert series.state == SeriesState.FAILED
    assert series.error is not None and series.error.startswith("classify: ")
    assert victim.name in series.error and "pixel data" in series.error
    [job] = node.classify_jobs(bad.series_uid)
    assert (job.state, job.attempts) == (JobState.FAILED, 1)  # not retried: it cannot help
    assert node.results(bad.series_uid) == []
    assert node.series(good.series_uid).state == SeriesState.CLASSIFIED
    assert len(node.results(good.series_uid)) == 1


def test_a_missing_file_fails_the_series_naming_it(node: Node) -> None:
    spooled = node.add(seed=4)
    spooled.paths[5].unlink()
    node.worker().run_until_idle()
    series = node.series(spooled.series_uid)
    assert series.state == SeriesState.FAILED
    assert series.error is not None and spooled.paths[5].name in series.error


def test_a_transient_error_is_retried_with_backoff(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    spooled = node.add(seed=5)
    calls = []
    real_infer = Classifier.infer

    def flaky(self: Classifier, model_input: Any) -> Any:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("CUDA error: out of memory (a passing fault)")
        return real_infer(self, model_input)

    monkeypatch.setattr(Classifier, "infer", flaky)
    settings = node.settings.model_copy(
        update={"worker": node.settings.worker.model_copy(update={"retry_backoff_seconds": 30})}
    )
    Worker(settings, node.db, build_handlers(settings, node.db)).run_until_idle()
    [job] = node.classify_jobs(spooled.series_uid)
    assert (job.state, job.attempts) == (JobState.PENDING, 1)
    assert "out of memory" in (job.error or "")
    assert job.available_at > utcnow() + timedelta(seconds=25)  # backoff, not at once
    assert node.series(spooled.series_uid).state == SeriesState.ELIGIBLE

    with node.db.write() as session:
        session.execute(update(Job).where(Job.id == job.id).values(available_at=utcnow()))
    node.worker().run_until_idle()
    [job] = node.classify_jobs(spooled.series_uid)
    assert (job.state, job.outcome, job.attempts) == (JobState.DONE, "classified", 2)
    assert len(node.results(spooled.series_uid)) == 1 and len(calls) == 2


def reopen(db: Database, uid: str) -> int:
    """What a late instance does to a completed series: a new version, receiving again."""
    with db.write() as session:
        series = session.scalars(select(Series).where(Series.series_uid == uid)).one()
        series.version += 1
        series.state = SeriesState.RECEIVING
        return series.version


def test_a_reopened_series_gets_a_new_result_version(node: Node) -> None:
    spooled = node.add(seed=6)
    node.worker().run_until_idle()
    assert reopen(node.db, spooled.series_uid) == 2
    node.worker().run_until_idle()  # sweep -> check -> classify version 2
    results = node.results(spooled.series_uid)
    assert [r.series_version for r in results] == [1, 2]
    assert results[0].probability == pytest.approx(results[1].probability)
    assert [j.series_version for j in node.classify_jobs(spooled.series_uid)] == [1, 2]


def run_checks(node: Node) -> None:
    """Run the check jobs only: eligible series get a classify job."""
    check = build_handlers(node.settings, node.db)[CHECK]
    Worker(node.settings, node.db, {CHECK: check}).run_until_idle()


def leased_classify_job(node: Node, uid: str, queue: JobQueue) -> Any:
    """Run the check job only, then lease the classify job it queued."""
    run_checks(node)
    job = queue.claim([CLASSIFY])
    assert job is not None and node.series(uid).state == SeriesState.ELIGIBLE
    return job


def lease_expiry(db: Database, job_id: int) -> datetime | None:
    with db.session() as session:
        return session.get(Job, job_id).lease_expires_at  # type: ignore[union-attr]


def eventually(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait for the worker's thread to act (polling; no margin of time is involved)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_series_reopened_before_the_job_runs_records_nothing(node: Node) -> None:
    spooled = node.add(seed=7)
    queue = JobQueue(node.db, "test", 60, 0)
    job = leased_classify_job(node, spooled.series_uid, queue)
    reopen(node.db, spooled.series_uid)
    handler = build_handlers(node.settings, node.db)[CLASSIFY]
    result = handler(job)
    assert result.outcome == "stale"
    queue.finish(job.id, result.outcome, result.effects)
    assert node.results(spooled.series_uid) == []
    assert node.series(spooled.series_uid).state == SeriesState.RECEIVING


def test_a_series_reopened_during_inference_records_nothing(node: Node) -> None:
    spooled = node.add(seed=8)
    queue = JobQueue(node.db, "test", 60, 0)
    job = leased_classify_job(node, spooled.series_uid, queue)
    handler = build_handlers(node.settings, node.db)[CLASSIFY]
    assert isinstance(handler, ClassifySeries)
    result = handler.complete(job, handler.prepare(job))
    assert result.outcome == "classified"
    reopen(node.db, spooled.series_uid)  # between inference and the commit
    queue.finish(job.id, result.outcome, result.effects)
    assert node.results(spooled.series_uid) == []
    assert node.series(spooled.series_uid).version == 2


def manual_clock_after_checks(node: Node) -> ManualClock:
    """Run the check jobs, then start a manual clock: the classify jobs they queued (at the
    real time) are due on it."""
    run_checks(node)
    return ManualClock()


def test_a_crashed_attempt_is_classified_once_by_the_next_worker(node: Node) -> None:
    spooled = node.add(seed=9)
    clock = manual_clock_after_checks(node)
    crashed = JobQueue(node.db, "crashed-worker", 60, 0, clock=clock)
    job = leased_classify_job(node, spooled.series_uid, crashed)
    handler = build_handlers(node.settings, node.db)[CLASSIFY]
    late = handler(job)  # computed, but the process "dies" before committing it

    clock.advance(61)  # its lease runs out; the next worker reaps it when it starts
    handlers = build_handlers(node.settings, node.db)
    Worker(node.settings, node.db, handlers, clock=clock).run_until_idle()
    with pytest.raises(LeaseLost):  # the dead worker's commit can never land afterwards
        crashed.finish(job.id, late.outcome, late.effects)
    [result] = node.results(spooled.series_uid)
    [job_row] = node.classify_jobs(spooled.series_uid)
    assert (job_row.state, job_row.attempts) == (JobState.DONE, 2)
    assert result.series_version == 1


def test_without_a_model_package_classify_jobs_wait(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = node_settings(tmp_path, None)
    db = Database(settings.db_url)
    db.upgrade()
    spooled = spool_synth(db, settings.spool_path, SeriesSpec(seed=1, matrix=48, slices=12))
    with caplog.at_level(logging.WARNING):
        handlers = build_handlers(settings, db)
    assert CLASSIFY not in handlers
    assert "no classifier in this worker" in caplog.text and "no-such-model" in caplog.text
    Worker(settings, db, handlers).run_until_idle()
    with db.session() as session:
        job = session.scalars(select(Job).where(Job.kind == CLASSIFY)).one()
        assert job.state == JobState.PENDING
        series = session.scalars(select(Series)).one()
        assert (series.series_uid, series.state) == (spooled.series_uid, SeriesState.ELIGIBLE)
    db.dispose()


def test_a_tampered_package_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    package = write_rule_package(tmp_path / "model")
    with (package.path / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    settings = node_settings(tmp_path, package.path)
    with caplog.at_level(logging.WARNING):
        assert load_classifier(settings) is None
    assert "model.onnx: sha256" in caplog.text


def test_the_pipeline_overlaps_preparing_with_inference(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    spooled = [node.add(seed=20 + i) for i in range(4)]
    spans: dict[str, list[tuple[float, float, str]]] = {"prepare": [], "infer": []}
    real_prepare, real_infer = ClassifySeries.prepare, Classifier.infer

    def timed(kind: str, real: Any) -> Any:
        def run(self: Any, arg: Any) -> Any:
            t0 = time.monotonic()
            out = real(self, arg)
            if kind == "infer":
                time.sleep(0.3)  # a slow network, so overlap is unmistakable
            spans[kind].append((t0, time.monotonic(), threading.current_thread().name))
            return out

        return run

    monkeypatch.setattr(ClassifySeries, "prepare", timed("prepare", real_prepare))
    monkeypatch.setattr(Classifier, "infer", timed("infer", real_infer))
    handlers = build_handlers(node.settings, node.db)
    Worker(node.settings, node.db, {CHECK: handlers[CHECK]}).run_until_idle()  # a backlog
    Worker(node.settings, node.db, handlers).run_until_idle()

    assert all(node.series(s.series_uid).state == SeriesState.CLASSIFIED for s in spooled)
    assert len(spans["prepare"]) == len(spans["infer"]) == 4
    assert all(name.startswith("classify-prepare") for *_, name in spans["prepare"])
    assert all(name == "MainThread" for *_, name in spans["infer"])
    # Some series was being prepared while another one was in the network.
    overlaps = [
        (p, i) for p in spans["prepare"] for i in spans["infer"] if p[0] < i[1] and i[0] < p[1]
    ]
    assert overlaps
    # Results are recorded in claim (queue) order.
    with node.db.session() as session:
        ids = list(session.scalars(select(Result.series_id).order_by(Result.id)))
        jobs = list(
            session.scalars(select(Job.series_id).where(Job.kind == CLASSIFY).order_by(Job.id))
        )
    assert ids == jobs


def test_waiting_jobs_keep_their_leases(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    spooled = node.add(seed=30)
    clock = manual_clock_after_checks(node)
    queue = JobQueue(node.db, "test", 60, 0, clock=clock)
    job = leased_classify_job(node, spooled.series_uid, queue)
    handler = build_handlers(node.settings, node.db)[CLASSIFY]
    assert isinstance(handler, ClassifySeries)
    prefetch = Prefetcher(handler, queue, threads=1, depth=2)
    prefetch.submit(job)
    assert lease_expiry(node.db, job.id) == clock.now() + timedelta(seconds=60)
    clock.advance(19)  # not yet a third of the lease: nothing to do
    prefetch.renew()
    assert lease_expiry(node.db, job.id) == clock.now() + timedelta(seconds=41)
    clock.advance(1)  # a third of the lease
    prefetch.renew()
    assert lease_expiry(node.db, job.id) == clock.now() + timedelta(seconds=60)

    # A job whose lease was taken away is dropped, not recorded.
    reap_expired(node.db, now=clock.now() + timedelta(seconds=61))
    clock.advance(20)
    prefetch.renew()
    assert len(prefetch) == 0 and prefetch.next() is None
    prefetch.close()


def test_prepare_ahead_keeps_order_and_bounds_the_work_in_flight() -> None:
    lock = threading.Lock()
    active = peak = 0

    def prepare(item: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return item * item

    seen = []
    for item, future in prepare_ahead(range(12), prepare, threads=3, depth=4):
        seen.append((item, future.result()))
        time.sleep(0.01)
    assert seen == [(i, i * i) for i in range(12)]
    assert 1 < peak <= 3


def test_prefetch_plan_fits_the_device() -> None:
    assert prefetch_plan("cpu", cpus=2) == PrefetchPlan(1, 2)
    assert prefetch_plan("cuda", cpus=16) == PrefetchPlan(8, 10)
    assert prefetch_plan("cuda", cpus=2) == PrefetchPlan(2, 4)
    assert prefetch_plan("cpu", cpus=16) == PrefetchPlan(1, 2)


def test_a_classify_job_for_a_deleted_series_version_does_not_run(node: Node) -> None:
    spooled = node.add(seed=31)
    with node.db.write() as session:
        series = session.scalars(
            select(Series).where(Series.series_uid == spooled.series_uid)
        ).one()
        series.state = SeriesState.ELIGIBLE
        enqueue(session, CLASSIFY, series.id, 5)  # a version the series never had
    Worker(
        node.settings, node.db, build_handlers(node.settings, node.db), sweep=False
    ).run_until_idle()
    [job] = node.classify_jobs(spooled.series_uid)
    assert (job.state, job.outcome) == (JobState.DONE, "stale")
    assert node.results(spooled.series_uid) == []


def test_a_series_slower_than_a_lease_keeps_it(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    spooled = node.add(seed=32)
    real_prepare = ClassifySeries.prepare
    preparing, prepared = threading.Event(), threading.Event()

    def slow(self: ClassifySeries, job: Any) -> Any:
        preparing.set()
        prepared.wait(120)  # a huge series on slow storage: done when the test says so
        return real_prepare(self, job)

    monkeypatch.setattr(ClassifySeries, "prepare", slow)
    clock = manual_clock_after_checks(node)
    settings = node.settings.model_copy(
        update={"worker": node.settings.worker.model_copy(update={"lease_seconds": 60})}
    )
    worker = Worker(settings, node.db, build_handlers(settings, node.db), clock=clock)
    runner = threading.Thread(target=worker.run_until_idle)
    runner.start()
    try:
        assert preparing.wait(60)
        [job] = node.classify_jobs(spooled.series_uid)
        for _ in range(10):  # over three leases, a third at a time
            clock.advance(20)
            # The worker, waiting for the series, extends its lease from now ...
            renewed = clock.now() + timedelta(seconds=60)
            eventually(lambda until=renewed: lease_expiry(node.db, job.id) == until)
            # ... so another host that reaps expired leases finds none.
            assert reap_expired(node.db, now=clock.now()) == 0
    finally:
        prepared.set()
        runner.join(120)
    [job] = node.classify_jobs(spooled.series_uid)
    assert (job.state, job.outcome, job.attempts) == (JobState.DONE, "classified", 1)
    assert len(node.results(spooled.series_uid)) == 1
