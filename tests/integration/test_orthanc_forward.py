"""The hospital path, end to end: CT uploaded to a real PACS reaches ivcontrast, is
classified, and the correction goes back to the PACS.

Orthanc (Debian's package) runs with the compose file's own configuration,
``deploy/orthanc/orthanc.json`` and its Lua auto-routing script, changed only where a test
on loopback must (free ports, a temporary storage folder, ivcontrast's address, a 1 s
StableAge). ivcontrast runs ``ivcontrast serve`` with the compose file's
``deploy/compose/ivcontrast.toml``, with the same kind of changes through ``IVCONTRAST_*``
variables. Orthanc forwards each stable CT series with its REST route
``/modalities/ivcontrast/store``; the corrected copies ivcontrast writes back are not
forwarded again.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from ivcontrast.config import load_settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import Job, JobState, Result, Series, SeriesState
from tests.support.classify_data import bundled_model, write_rule_package
from tests.support.deploy_harness import DEPLOY, free_port, ivcontrast
from tests.support.node_process import NodeProcess, clean_env
from tests.support.orthanc import find_orthanc

pytestmark = [
    pytest.mark.skipif(find_orthanc() is None, reason="Orthanc is not installed"),
    pytest.mark.slow,
]

ORTHANC_CONFIG = DEPLOY / "orthanc" / "orthanc.json"
NODE_CONFIG = DEPLOY / "compose" / "ivcontrast.toml"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


class Pacs:
    """Orthanc with the compose configuration, on loopback ports."""

    def __init__(self, root: Path, scp_port: int) -> None:
        config = json.loads(ORTHANC_CONFIG.read_text())
        self.aet = config["DicomAet"]
        self.http_port, self.dicom_port = free_port(), free_port()
        user, password = next(iter(config["RegisteredUsers"].items()))
        config.update(
            {
                "HttpPort": self.http_port,
                "DicomPort": self.dicom_port,
                "StorageDirectory": str(root / "db"),
                "IndexDirectory": str(root / "db"),
                "RemoteAccessAllowed": False,
                "StableAge": 1,
                "LuaScripts": [
                    str(DEPLOY / "orthanc" / Path(s).name) for s in config["LuaScripts"]
                ],
            }
        )
        config["DicomModalities"]["ivcontrast"].update({"Host": "127.0.0.1", "Port": scp_port})
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.log_path = root / "orthanc.log"
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.http_port}", auth=(user, password), timeout=30
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        binary = find_orthanc()
        assert binary is not None
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "--verbose", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if self.client.get("/system").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Orthanc did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.client.close()

    def get(self, path: str) -> Any:
        response = self.client.get(path)
        response.raise_for_status()
        return response.json()

    def upload(self, path: Path) -> None:
        response = self.client.post("/instances", content=path.read_bytes())
        response.raise_for_status()

    def series_of_study(self, study_uid: str) -> list[dict[str, Any]]:
        found = self.client.post("/tools/lookup", content=study_uid).json()
        studies = [item["ID"] for item in found if item["Type"] == "Study"]
        return self.get(f"/studies/{studies[0]}/series") if studies else []

    def store_jobs(self) -> list[dict[str, Any]]:
        jobs = [self.get(f"/jobs/{job}") for job in self.get("/jobs")]
        return [job for job in jobs if job["Type"] == "DicomModalityStore"]


@pytest.fixture
def hospital(tmp_path: Path) -> Iterator[tuple[Pacs, NodeProcess, Database]]:
    """Orthanc forwarding to ``ivcontrast serve``, which writes back to Orthanc."""
    scp_port = free_port()
    pacs = Pacs(tmp_path / "orthanc", scp_port)
    model = bundled_model()
    if model is None:  # no bundled model in this checkout yet: a rule that loads at once
        model = tmp_path / "rule-model"
        write_rule_package(model)
    destination = {
        "kind": "dicom",
        "name": "orthanc",
        "ae_title": pacs.aet,
        "host": "127.0.0.1",
        "port": pacs.dicom_port,
    }
    env = clean_env(
        {
            "IVCONTRAST_CONFIG": str(NODE_CONFIG),
            "IVCONTRAST_DATA_DIR": str(tmp_path / "node"),
            "IVCONTRAST_SPOOL_DIR": str(tmp_path / "node" / "spool"),
            "IVCONTRAST_SCP_BIND_ADDRESS": "127.0.0.1",
            "IVCONTRAST_SCP_PORT": str(scp_port),
            "IVCONTRAST_SCP_PROCESSES": "1",
            "IVCONTRAST_SCP_MIN_FREE_MB": "0",
            "IVCONTRAST_WEB_ENABLED": "false",
            "IVCONTRAST_WORKER_SWEEP_SECONDS": "0.2",
            "IVCONTRAST_WORKER_POLL_SECONDS": "0.2",
            "IVCONTRAST_WORKER_SETTLE_SECONDS": "0.5",
            "IVCONTRAST_WRITEBACK_DESTINATIONS": json.dumps([destination]),
            "IVCONTRAST_WRITEBACK_BACKOFF_SECONDS": "1",
            "IVCONTRAST_CLASSIFIER_MODEL": str(model),
            "IVCONTRAST_CLASSIFIER_THREADS": "2",
        }
    )
    node = NodeProcess(ivcontrast("serve"), env, tmp_path / "serve.log", cwd=tmp_path)
    settings = load_settings(env=env)
    pacs.start()
    try:
        with node:
            node.wait_for(r"listening on 127\.0\.0\.1:\d+ as IVCONTRAST")
            node.wait_for(r"worker \S+ started; job kinds: .*classify")
            db = Database(settings.db_url)
            try:
                yield pacs, node, db
            finally:
                db.dispose()
            assert node.stop(timeout=60) == 0
    finally:
        pacs.stop()


def synth(out: Path, *args: str) -> list[Path]:
    from ivcontrast.cli import main

    assert main(["synth", str(out), *args]) == 0
    return sorted(out.rglob("*.dcm"))


def as_mr(files: list[Path], out: Path) -> list[Path]:
    """Copies of ``files`` as an MR series of a new study (not to be forwarded)."""
    out.mkdir()
    study, series = generate_uid(), generate_uid()
    written = []
    for path in files:
        ds = pydicom.dcmread(path)
        sop = generate_uid()
        ds.Modality = "MR"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.UID(MR_IMAGE_STORAGE)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        target = out / path.name
        ds.save_as(target, enforce_file_format=True)
        written.append(target)
    return written


def wait_until(condition: Any, timeout: float, what: str, node: NodeProcess) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert node.alive(), node.log()[-4000:]
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:.0f} s:\n{node.log()[-4000:]}")


def test_ct_uploaded_to_orthanc_is_forwarded_classified_and_corrected(
    hospital: tuple[Pacs, NodeProcess, Database], tmp_path: Path
) -> None:
    pacs, node, db = hospital
    shape = ["--matrix", "128", "--slices", "48", "--region", "chest", "--tag", "missing"]
    contrast = synth(tmp_path / "c", *shape, "--phase", "portal_venous", "--seed", "11")
    plain = synth(tmp_path / "n", *shape, "--phase", "none", "--seed", "12")
    mr = as_mr(plain[:3], tmp_path / "mr")
    heads = {
        label: pydicom.dcmread(files[0])
        for label, files in (("contrast", contrast), ("no_contrast", plain))
    }
    expected = {str(ds.SeriesInstanceUID): label for label, ds in heads.items()}
    study_of = {str(ds.SeriesInstanceUID): str(ds.StudyInstanceUID) for ds in heads.values()}
    mr_series = str(pydicom.dcmread(mr[0]).SeriesInstanceUID)
    for path in [*contrast, *plain, *mr]:
        pacs.upload(path)

    def results() -> dict[str, Result] | None:
        with db.session() as session:
            rows = session.execute(select(Series.series_uid, Result).join(Result.series)).all()
        found = {uid: result for uid, result in rows}
        return found if set(found) >= set(expected) else None

    found = wait_until(results, 180, "no results for both CT series", node)
    assert set(found) == set(expected)
    if bundled_model() is not None:
        assert {uid: r.label for uid, r in found.items()} == expected
    with db.session() as session:
        series = {s.series_uid: s for s in session.scalars(select(Series))}
        instances = {uid: s.instance_count for uid, s in series.items()}
    # Exactly the two CT series arrived, whole, once; the MR series was not forwarded.
    assert set(series) == set(expected) and mr_series not in series
    assert sorted(instances.values()) == [len(contrast), len(plain)]
    assert all(s.version == 1 and s.state == SeriesState.CLASSIFIED for s in series.values())

    # The corrections arrive in Orthanc (copies and a report, per series).
    def written_back() -> bool:
        with db.session() as session:
            jobs = session.scalars(select(Job).where(Job.kind == "writeback")).all()
        assert not [j.error for j in jobs if j.state == JobState.FAILED]
        return len(jobs) >= len(expected) and all(j.state == JobState.DONE for j in jobs)

    wait_until(written_back, 120, "write-back did not finish", node)
    for uid, result in found.items():
        in_pacs = pacs.series_of_study(study_of[uid])
        corrected = [
            s
            for s in in_pacs
            if s["MainDicomTags"]["SeriesInstanceUID"] != uid
            and s["MainDicomTags"]["Modality"] == "CT"
        ]
        assert len(corrected) == 1, in_pacs
        first = pacs.get(f"/instances/{corrected[0]['Instances'][0]}/simplified-tags")
        agent = "IV CONTRAST" if result.label == "contrast" else "NONE"
        assert first["ContrastBolusAgent"] == agent
        assert first["SeriesDescription"].endswith("(contrast corrected)")
        reports = [s for s in in_pacs if s["MainDicomTags"]["Modality"] == "SR"]
        assert len(reports) == 1, in_pacs

    # Orthanc forwarded each original CT series once, and nothing ivcontrast sent back:
    # wait until every series it holds is stable (the Lua hook has run), then count.
    def all_stable() -> bool:
        return all(pacs.get(f"/series/{s}")["IsStable"] for s in pacs.get("/series"))

    wait_until(all_stable, 60, "Orthanc's series did not become stable", node)
    time.sleep(2.0)
    jobs = pacs.store_jobs()
    assert len(jobs) == len(expected), jobs
    assert all(job["State"] == "Success" for job in jobs), jobs
    with db.session() as session:
        assert session.scalar(select(func.count(Series.id))) == len(expected)
        assert session.scalar(select(func.count(Result.id))) == len(expected)
