"""End to end over loopback: DCMTK ``storescu`` -> ``ivcontrast serve`` (a subprocess) -> results.

Synthetic contrast and non-contrast series of the head and neck and the chest, an MR series,
a CT localizer and a series with a corrupt instance are sent one association per series. Each
CT series must get exactly one result (the right label, with the bundled default model once it
exists), the others skipped with their reasons, the corrupt one failed with an error naming
the file while the worker goes on; a kill -9 during classification and a restart classify each
series exactly once.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

import pydicom
import pytest
from sqlalchemy import func, select

from ivcontrast.classifier.dicom_series import DicomSeries
from ivcontrast.classifier.package import load_package
from ivcontrast.classifier.preprocess import PreprocessConfig, plan_samples
from ivcontrast.cli import main
from ivcontrast.store.db import Database
from ivcontrast.store.models import Job, JobState, Result, Series
from ivcontrast.synth import Phase, Region, SeriesKind, SeriesSpec, SopClass, write_series
from tests.support.classify_data import bundled_model, corrupt_pixel_data, write_rule_package
from tests.support.node_process import NodeProcess, clean_env
from tests.support.scp_harness import dcmtk, storescu

pytestmark = pytest.mark.slow

FINAL_STATES = ("classified", "skipped", "failed")
# The rule package's input when there is no bundled model: the default input size, so that
# preparing a series takes about as long as it will with the real model.
RULE_CONFIG = PreprocessConfig()
CT = ("chest_arterial", "chest_none", "headneck_venous", "headneck_none")


@dataclass
class Sent:
    name: str
    spec: SeriesSpec
    files: list[Path]
    series_uid: str


@dataclass
class Data:
    model: Path
    series: dict[str, Sent]
    corrupt_sop: str


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    dcmtk("storescu")
    root = tmp_path_factory.mktemp("e2e")
    model = bundled_model() or write_rule_package(root / "rule-model", RULE_CONFIG).path
    config = load_package(model, verify=False).card.preprocess
    specs = {
        "chest_arterial": SeriesSpec(region=Region.CHEST, phase=Phase.ARTERIAL, seed=101),
        "chest_none": SeriesSpec(region=Region.CHEST, phase=Phase.NONE, seed=102),
        "headneck_venous": SeriesSpec(region=Region.HEADNECK, phase=Phase.PORTAL_VENOUS, seed=103),
        "headneck_none": SeriesSpec(region=Region.HEADNECK, phase=Phase.NONE, seed=104),
        "corrupt": SeriesSpec(region=Region.CHEST, phase=Phase.DELAYED, seed=105),
        "mr": SeriesSpec(
            region=Region.HEADNECK, sop_class=SopClass.MR, seed=106, matrix=64, slices=16
        ),
        "localizer": SeriesSpec(
            region=Region.CHEST, kind=SeriesKind.LOCALIZER, seed=107, matrix=128
        ),
    }
    series = {}
    for name, spec in specs.items():
        if name in CT or name == "corrupt":
            spec = replace(spec, matrix=160 if spec.seed % 2 else 128, slices=48)
        files = write_series(spec, root / name)
        uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
        series[name] = Sent(name, spec, files, uid)
    # Corrupt a slice that the model input is taken from, so the classifier decodes it.
    corrupt = DicomSeries.open(series["corrupt"].files)
    index = int(plan_samples(corrupt.geometry.z_mm, config.num_slices)[2][0])
    victim = corrupt.headers[index]
    corrupt_pixel_data(victim.path)
    return Data(model, series, victim.sop_instance_uid)


class ServeProcess(NodeProcess):
    """``ivcontrast serve`` as a subprocess in its own session (kill -9 takes every process)."""

    LISTENING = r"listening on \S+:(\d+) as "

    def __init__(self, data_dir: Path, model: Path) -> None:
        settings = {
            "scp.bind_address": "127.0.0.1",
            "scp.min_free_mb": 0,
            "worker.quiet_seconds": 5,
            "worker.settle_seconds": 0.5,
            "worker.sweep_seconds": 0.2,
            "worker.poll_seconds": 0.1,
            "worker.lease_seconds": 4,
            "worker.reap_seconds": 1,
            "classifier.model": str(model),
            "classifier.device": "cpu",
        }
        command = [sys.executable, "-m", "ivcontrast", "--data-dir", str(data_dir)]
        for key, value in settings.items():
            command += ["--set", f"{key}={value}"]
        command += ["serve", "--port", "0", "--processes", "1", "--no-web"]
        super().__init__(command, clean_env(), data_dir / "serve-0.log")
        self.data_dir = data_dir
        self.port = 0
        self.starts = 0

    def start(self, timeout: float = 120.0) -> Self:
        """Each start logs to a file of its own (serve-1.log, serve-2.log, ...)."""
        self.starts += 1
        self.log_path = self.data_dir / f"serve-{self.starts}.log"
        super().start()
        try:
            self.port = int(self.wait_for(self.LISTENING, timeout).group(1))
        except RuntimeError:
            self.kill()
            raise
        return self


@pytest.fixture
def serve(tmp_path: Path, data: Data) -> Iterator[ServeProcess]:
    node = ServeProcess(tmp_path / "node", data.model)
    yield node
    if node.alive():
        node.kill()


def send(node: ServeProcess, sent: Sent) -> None:
    out = storescu(node.port, sent.files)
    assert out.returncode == 0 and len(out.succeeded) == len(sent.files), out.output[-2000:]


def store(node: ServeProcess) -> Database:
    return Database(f"sqlite:///{(node.data_dir / 'ivcontrast.db').resolve()}")


def wait_for(node: ServeProcess, done: Callable[[Database], bool], timeout: float = 240.0) -> None:
    db = store(node)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done(db):
                return
            assert node.alive(), f"ivcontrast serve died:\n{node.log()[-3000:]}"
            time.sleep(0.2)
        raise AssertionError(f"timed out; serve log:\n{node.log()[-4000:]}")
    finally:
        db.dispose()


def states(db: Database) -> dict[str, tuple[str, str | None]]:
    with db.session() as session:
        return {
            s.series_uid: (s.state, s.skip_reason or s.error)
            for s in session.scalars(select(Series))
        }


def all_final(uids: list[str]) -> Callable[[Database], bool]:
    def check(db: Database) -> bool:
        found = states(db)
        return all(found.get(uid, ("",))[0] in FINAL_STATES for uid in uids)

    return check


def results_table(node: ServeProcess, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    argv = ["--data-dir", str(node.data_dir), "results", "--format", "json", "--all-versions"]
    assert main([*argv, "--limit", "0"]) == 0
    return json.loads(capsys.readouterr().out)


@dataclass
class Run:
    node: ServeProcess
    states: dict[str, tuple[str, str | None]]
    results: list[dict[str, Any]]


@pytest.fixture
def run(serve: ServeProcess, data: Data, capsys: pytest.CaptureFixture[str]) -> Run:
    """Every series sent, one association each, and the node left to finish them."""
    serve.start()
    for sent in data.series.values():
        send(serve, sent)
    uids = [s.series_uid for s in data.series.values()]
    wait_for(serve, all_final(uids))
    return Run(serve, states_of(serve), results_table(serve, capsys))


def test_series_from_storescu_are_classified_skipped_or_failed(run: Run, data: Data) -> None:
    uid = {name: sent.series_uid for name, sent in data.series.items()}
    for name in CT:
        assert run.states[uid[name]] == ("classified", None), name
    assert run.states[uid["mr"]] == ("skipped", "not CT (modality MR)")
    assert run.states[uid["localizer"]] == ("skipped", "localizer/scout")
    state, error = run.states[uid["corrupt"]]
    assert state == "failed" and error is not None
    assert error.startswith("classify: ") and f"{data.corrupt_sop}.dcm" in error
    assert "pixel data" in error
    assert run.node.alive()  # the worker went on

    rows = {r["series_uid"]: r for r in run.results}
    assert sorted(rows) == sorted(uid[name] for name in CT)  # one result each, version 1
    assert len(run.results) == len(CT)
    package = load_package(data.model, verify=False)
    for name in CT:
        row = rows[uid[name]]
        assert row["version"] == 1 and row["series_state"] == "classified"
        network = "contrast" if row["probability"] >= row["threshold"] else "no_contrast"
        assert row["network_label"] == network
        # review: the blood pool or the review band asks a person (low-matrix phantoms here)
        assert row["label"] in (network, "review")
        assert (row["model_name"], row["model_version"]) == (
            package.card.name,
            package.card.version,
        )
        assert row["model_sha256"] == package.card_sha256
        assert 0 < row["slices_used"] == len(row["slice_probabilities"])
        agent = pydicom.dcmread(data.series[name].files[0]).get("ContrastBolusAgent") or None
        assert row["tag"] == agent
        assert row["device"] == "onnxruntime-cpu" and row["seconds"] > 0


@pytest.mark.skipif(bundled_model() is None, reason="no bundled default model in this checkout")
def test_each_series_gets_the_right_label_with_the_bundled_model(run: Run, data: Data) -> None:
    rows = {r["series_uid"]: r for r in run.results}
    calls = {
        name: (rows[data.series[name].series_uid]["label"], data.series[name].spec.phase.contrast)
        for name in CT
    }
    assert all((label == "contrast") == truth for label, truth in calls.values()), calls


def test_kill_during_classification_then_restart_classifies_each_series_once(
    serve: ServeProcess, data: Data, capsys: pytest.CaptureFixture[str]
) -> None:
    serve.start()
    sent = [data.series[name] for name in CT]
    for series in sent:
        send(serve, series)

    def classify_leased(db: Database) -> bool:
        with db.session() as session:
            leased = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.kind == "classify", Job.state == JobState.LEASED)
            )
        return bool(leased)

    wait_for(serve, classify_leased)
    serve.kill()
    db = store(serve)
    try:
        with db.session() as session:
            before = session.scalar(select(func.count()).select_from(Result))
            leased = session.scalar(
                select(func.count()).select_from(Job).where(Job.state == JobState.LEASED)
            )
    finally:
        db.dispose()
    assert leased and before is not None and before < len(sent)  # killed mid-classification

    serve.start()
    wait_for(serve, all_final([s.series_uid for s in sent]))
    final = {uid: state for uid, (state, _) in states_of(serve).items()}
    assert final == {s.series_uid: "classified" for s in sent}
    rows = results_table(serve, capsys)
    assert sorted((r["series_uid"], r["version"]) for r in rows) == sorted(
        (s.series_uid, 1) for s in sent
    )
    db = store(serve)
    try:
        with db.session() as session:
            jobs = session.execute(
                select(Job.series_id, Job.state, Job.outcome).where(Job.kind == "classify")
            ).all()
    finally:
        db.dispose()
    assert len(jobs) == len(sent)  # one classify job per series version, each done once
    assert {(state, outcome) for _, state, outcome in jobs} == {("done", "classified")}
    assert serve.stop() == 0


def states_of(node: ServeProcess) -> dict[str, tuple[str, str | None]]:
    db = store(node)
    try:
        return states(db)
    finally:
        db.dispose()
