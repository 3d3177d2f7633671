"""End to end over loopback: a series the network and the physics opinion disagree on ends in
``review``, and everything that reads the store says so.

``ivcontrast serve`` (a subprocess: listener, worker and web app) runs a model package that
calls every slice contrast, with write-back of every call to a folder. DCMTK ``storescu``
sends a NON-contrast chest phantom, whose blood pool reads ~40 HU. The series must end in
``review`` (not ``contrast``); ``ivcontrast results --label review``, ``/api/results``, the
dashboard's series page and ``/metrics`` show it with the blood pool's HU; and no write-back
job, row or file exists for it.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from sqlalchemy import select

from ivcontrast.classifier.preprocess import PreprocessConfig
from ivcontrast.cli import main
from ivcontrast.store.db import Database
from ivcontrast.store.models import Job, Result, Series, Writeback
from ivcontrast.synth import Phase, Region, SeriesSpec, write_series
from tests.support.classify_data import write_rule_package
from tests.support.node_process import NodeProcess, clean_env
from tests.support.scp_harness import dcmtk, storescu

pytestmark = pytest.mark.slow

# Unenhanced blood reads 30-70 HU; the physics threshold is 125 HU.
BLOOD_HU = (20.0, 80.0)


@dataclass
class Node:
    process: NodeProcess
    data_dir: Path
    outbox: Path
    dicom_port: int
    web_url: str
    series_uid: str


def _config(root: Path, model: Path) -> Path:
    data_dir, outbox = root / "node", root / "outbox"
    outbox.mkdir(parents=True)
    config = root / "ivcontrast.toml"
    config.write_text(
        f'data_dir = "{data_dir}"\n'
        '[scp]\nbind_address = "127.0.0.1"\nmin_free_mb = 0\n'
        "[worker]\nquiet_seconds = 5\nsettle_seconds = 0.5\nsweep_seconds = 0.2\n"
        "poll_seconds = 0.1\n"
        f'[classifier]\nmodel = "{model}"\ndevice = "cpu"\n'
        '[web]\nhost = "127.0.0.1"\n'
        # Every call is written back, and write-back of a series in review is left at its
        # default (skip): were the series called contrast, a job and files would appear.
        '[writeback]\nenabled = true\ntrigger = "all"\n'
        f'[[writeback.destinations]]\nkind = "folder"\nname = "outbox"\npath = "{outbox}"\n'
    )
    return config


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    dcmtk("storescu")
    root = tmp_path_factory.mktemp("review-e2e")
    # A network that says contrast for everything: logit 5 on every slice (p = 0.993).
    model = write_rule_package(
        root / "model", PreprocessConfig(size=32, num_slices=8), weight=0.0, bias=5.0
    ).path
    spec = SeriesSpec(
        region=Region.CHEST, phase=Phase.NONE, seed=7, matrix=256, slices=48, thickness=5.0
    )
    files = write_series(spec, root / "series")
    series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    config = _config(root, model)
    command = [sys.executable, "-m", "ivcontrast", "--config", str(config)]
    command += ["serve", "--port", "0", "--web-port", "0", "--processes", "1"]
    process = NodeProcess(command, clean_env(), root / "serve.log")
    process.start()
    try:
        dicom_port = int(process.wait_for(r"listening on \S+:(\d+) as ", 120).group(1))
        web_url = process.wait_for(r"web app serving on (http://\S+)", 60).group(1)
        sent = storescu(dicom_port, files)
        assert sent.returncode == 0 and len(sent.succeeded) == len(files), sent.output[-2000:]
        node = Node(process, root / "node", root / "outbox", dicom_port, web_url, series_uid)
        _wait_classified(node)
        yield node
    finally:
        if process.alive():
            process.stop()


def _store(node: Node) -> Database:
    return Database(f"sqlite:///{(node.data_dir / 'ivcontrast.db').resolve()}")


def _wait_classified(node: Node, timeout: float = 240.0) -> None:
    db = _store(node)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with db.session() as session:
                state = session.scalar(
                    select(Series.state).where(Series.series_uid == node.series_uid)
                )
            if state in ("classified", "skipped", "failed"):
                assert state == "classified", node.process.log()[-4000:]
                return
            assert node.process.alive(), f"serve died:\n{node.process.log()[-4000:]}"
            time.sleep(0.2)
        raise AssertionError(f"not classified in time:\n{node.process.log()[-4000:]}")
    finally:
        db.dispose()


def _get(node: Node, path: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(node.web_url + path, timeout=30) as response:
        return response.status, response.headers.get("content-type", ""), response.read()


def _json(node: Node, path: str) -> Any:
    status, kind, body = _get(node, path)
    assert status == 200 and kind.startswith("application/json"), (status, kind)
    return json.loads(body)


def test_the_series_ends_in_review_with_the_blood_pools_hu(node: Node) -> None:
    db = _store(node)
    try:
        with db.session() as session:
            [result] = session.scalars(
                select(Result).join(Series).where(Series.series_uid == node.series_uid)
            ).all()
            assert (result.label, result.network_label) == ("review", "contrast")
            assert result.probability > 0.99  # the network alone would have said contrast
            assert result.physics_label == "no_contrast"
            assert result.physics_hu is not None and BLOOD_HU[0] < result.physics_hu < BLOOD_HU[1]
            assert result.physics is not None and result.physics["found"] is True
            assert any("blood pool" in reason for reason in result.review_reasons or [])
    finally:
        db.dispose()


def test_results_lists_it_under_review(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data-dir", str(node.data_dir), "results", "--label", "review"]
    assert main([*argv, "--format", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["series_uid"], row["label"]) == (node.series_uid, "review")
    assert BLOOD_HU[0] < row["blood_hu"] < BLOOD_HU[1] and row["blood_pool"] == "chest vessel"
    assert row["why"] == "blood pool disagrees"
    assert main(argv) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert "BLOOD_HU" in header and node.series_uid in line and " review " in line
    assert main(["--data-dir", str(node.data_dir), "results", "--label", "contrast"]) == 0
    assert node.series_uid not in capsys.readouterr().out


def test_the_api_dashboard_and_metrics_show_it(node: Node) -> None:
    page = _json(node, "/api/results?label=review")
    [item] = page["items"]
    assert (item["series_uid"], item["label"], item["network_label"]) == (
        node.series_uid,
        "review",
        "contrast",
    )
    assert item["physics_label"] == "no_contrast" and item["review_reasons"]
    assert item["physics"]["found"] is True and item["physics"]["hu"] == pytest.approx(
        item["physics_hu"], abs=0.1
    )
    assert _json(node, "/api/results?label=contrast")["total"] == 0
    detail = _json(node, f"/api/series/{node.series_uid}")
    assert detail["result"]["label"] == "review"
    assert detail["writebacks"] == [] and "writeback" not in {j["kind"] for j in detail["jobs"]}

    status, kind, html_bytes = _get(node, f"/series/{node.series_uid}")
    html = html_bytes.decode()
    assert status == 200 and kind.startswith("text/html")
    assert 'class="chip big-chip label-review"' in html and "In review: a person decides." in html
    assert f"{item['physics_hu']:.0f} HU" in html and "Physics second opinion" in html
    status, kind, png = _get(node, detail["physics_thumbnail"])
    assert status == 200 and kind == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n"

    _, _, metrics = _get(node, "/metrics")
    assert re.search(r'^ivcontrast_current_results\{label="review"\} 1$', metrics.decode(), re.M)
    assert re.search(r'^ivcontrast_current_results\{label="contrast"\} 0$', metrics.decode(), re.M)
    assert re.search(r'^ivcontrast_results_total\{label="review",', metrics.decode(), re.M)
    assert _json(node, "/api/summary")["in_review"] == 1


def test_nothing_is_written_back_for_it(node: Node) -> None:
    time.sleep(2.0)  # a write-back job, were one queued, would be taken by now
    db = _store(node)
    try:
        with db.session() as session:
            kinds = session.scalars(select(Job.kind)).all()
            assert "writeback" not in kinds and "classify" in kinds
            assert session.scalars(select(Writeback)).all() == []
    finally:
        db.dispose()
    assert list(node.outbox.iterdir()) == []
    assert "is in review: no write-back" in node.process.log()
