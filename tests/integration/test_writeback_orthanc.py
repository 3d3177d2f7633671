"""Write-back against real peers: Orthanc (Debian's package) over loopback, dciodvfy, folders.

Each test builds a small CT series in a spool with its store rows and a result, enqueues
write-back as the classify step does, and runs the real worker loop; the outcome is read
back from Orthanc's REST API, the files, and the store.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from sqlalchemy import update

from ivcontrast.config import load_settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import JobState, Series
from ivcontrast.worker.service import build_handlers
from ivcontrast.writeback import enqueue_writeback
from ivcontrast.writeback.uids import WritebackUids
from tests.support.orthanc import Orthanc, find_orthanc, make_certificates
from tests.support.writeback_data import (
    DCIODVFY,
    dciodvfy_errors,
    jobs,
    make_result,
    node,
    node_store,
    record_result,
    run_worker,
    spool_series,
    writebacks,
)

pytestmark = [
    pytest.mark.skipif(find_orthanc() is None, reason="Orthanc is not installed"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    server.start()
    yield server
    server.stop(kill=True)


def pacs(server: Orthanc, **kwargs: Any) -> dict[str, Any]:
    return {
        "kind": "dicom",
        "name": "pacs",
        "ae_title": server.aet,
        "host": "127.0.0.1",
        "port": server.dicom_port,
        **kwargs,
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Database]:
    db = node_store(tmp_path)
    yield db
    db.dispose()


def study_instance_count(server: Orthanc, study_uid: str) -> int:
    found = [i for i in server.lookup(study_uid) if i["Type"] == "Study"]
    return len(server.get(f"/studies/{found[0]['ID']}/instances")) if found else 0


# -- the happy path ---------------------------------------------------------------------------


def test_corrected_copies_and_report_arrive(
    orthanc: Orthanc, store: Database, tmp_path: Path
) -> None:
    settings = node(tmp_path, [pacs(orthanc)])
    spooled = spool_series(store, settings.spool_path, 4, contrast_agent="N")
    before = spooled.digests()
    assert record_result(store, settings, spooled, tag_status="disagrees", original="N") == 1
    assert run_worker(settings, store) == 1

    (job,) = jobs(store)
    assert (job.state, job.outcome, job.attempts) == (JobState.DONE, "sent", 1)
    (row,) = writebacks(store)
    uids = WritebackUids(settings.writeback.uid_prefix, spooled.series_uid, 1, keep=False)
    assert (row.outcome, row.instances_total, row.instances_sent, row.report_sent) == (
        "sent",
        4,
        4,
        True,
    )
    assert row.copies_series_uid == uids.copies_series_uid and row.sent_at is not None

    copies = orthanc.series_by_uid(uids.copies_series_uid)
    assert copies is not None and len(copies["Instances"]) == 4
    originals = {dcmread(p).SOPInstanceUID: p for p in spooled.files}
    expected_uids = {uids.copy_sop_uid(uid) for uid in originals}
    seen = set()
    for orthanc_id in copies["Instances"]:
        tags = orthanc.instance_tags(orthanc_id)
        assert tags["ContrastBolusAgent"] == "IV CONTRAST"
        assert tags["ContrastBolusRoute"] == "IV"
        assert tags["SeriesDescription"] == "Chest 1.25mm (contrast corrected)"
        assert tags["SeriesInstanceUID"] == uids.copies_series_uid
        assert tags["StudyInstanceUID"] == spooled.study_uid
        assert tags["ContributingEquipmentSequence"][0]["Manufacturer"] == "ivcontrast"
        source = tags["SourceImageSequence"][0]["ReferencedSOPInstanceUID"]
        assert uids.copy_sop_uid(source) == tags["SOPInstanceUID"]
        seen.add(tags["SOPInstanceUID"])
        # The pixel data arrived as it was in the spool.
        copy = dcmread(io.BytesIO(orthanc.instance_file(orthanc_id)))
        assert bytes(copy.PixelData) == bytes(dcmread(originals[source]).PixelData)
    assert seen == expected_uids and not seen & set(originals)

    report = orthanc.series_by_uid(uids.report_series_uid)
    assert report is not None and len(report["Instances"]) == 1
    sr = orthanc.instance_tags(report["Instances"][0])
    assert sr["Modality"] == "SR" and sr["SOPInstanceUID"] == uids.report_sop_uid
    assert sr["StudyInstanceUID"] == spooled.study_uid

    assert spooled.digests() == before  # originals in the spool are byte-identical

    # The same result version is never written back twice.
    count = study_instance_count(orthanc, spooled.study_uid)
    with store.write() as session:
        assert enqueue_writeback(session, settings.writeback, make_result(spooled.series_id)) == 0
    assert run_worker(settings, store) == 0
    assert study_instance_count(orthanc, spooled.study_uid) == count == 5


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (Debian dicom3tools) is not installed")
def test_dciodvfy_finds_no_errors_in_what_orthanc_received(
    orthanc: Orthanc, store: Database, tmp_path: Path
) -> None:
    settings = node(tmp_path, [pacs(orthanc)], trigger="all")
    spooled = spool_series(store, settings.spool_path, 2, contrast_agent="OMNIPAQUE")
    assert dciodvfy_errors(spooled.files[0]) == []  # the source is clean, so errors are ours
    record_result(store, settings, spooled, label="no_contrast", probability=0.05)
    run_worker(settings, store)
    (row,) = writebacks(store)
    assert row.outcome == "sent"
    copy_id = orthanc.series_by_uid(row.copies_series_uid)["Instances"][0]
    report_id = orthanc.series_by_uid(row.report_series_uid)["Instances"][0]
    for name, orthanc_id in (("copy.dcm", copy_id), ("report.dcm", report_id)):
        path = tmp_path / name
        path.write_bytes(orthanc.instance_file(orthanc_id))
        assert dciodvfy_errors(path) == [], name
    assert dcmread(tmp_path / "copy.dcm").ContrastBolusAgent == "NONE"


def test_reopened_series_is_written_back_once_more(
    orthanc: Orthanc, store: Database, tmp_path: Path
) -> None:
    settings = node(tmp_path, [pacs(orthanc)], report=False)
    spooled = spool_series(store, settings.spool_path, 2)
    record_result(store, settings, spooled)
    # A late instance re-opens the series before the job runs: version 1 is superseded.
    with store.write() as session:
        session.execute(update(Series).where(Series.id == spooled.series_id).values(version=2))
    assert record_result(store, settings, spooled, version=2) == 1
    assert run_worker(settings, store) == 2
    v1, v2 = writebacks(store)
    assert (v1.outcome, v2.outcome) == ("superseded", "sent")
    assert orthanc.series_by_uid(v1.copies_series_uid) is None
    assert orthanc.series_by_uid(v2.copies_series_uid) is not None
    assert v1.copies_series_uid != v2.copies_series_uid


# -- failures ---------------------------------------------------------------------------------


def test_orthanc_down_then_back_is_retried_with_backoff(store: Database, tmp_path: Path) -> None:
    server = Orthanc(tmp_path / "orthanc")  # not started: the PACS is down
    settings = node(tmp_path, [pacs(server)], backoff_seconds=0.5, max_attempts=3)
    spooled = spool_series(store, settings.spool_path, 2)
    record_result(store, settings, spooled)
    assert run_worker(settings, store) == 1
    (job,) = jobs(store)
    assert (job.state, job.attempts) == (JobState.PENDING, 1)
    assert "Connection refused" in (job.error or "")
    assert job.available_at - job.started_at >= timedelta(seconds=0.45)  # first backoff
    (row,) = writebacks(store)
    assert row.outcome == "failed" and "Connection refused" in (row.error or "")
    assert run_worker(settings, store) == 0  # not due yet

    server.start()
    try:
        time.sleep(0.6)
        assert run_worker(settings, store) == 1
        (job,) = jobs(store)
        assert (job.state, job.outcome, job.attempts, job.error) == (
            JobState.DONE,
            "sent",
            2,
            None,
        )
        (row,) = writebacks(store)
        assert (row.outcome, row.error) == ("sent", None)
        assert server.series_by_uid(row.copies_series_uid) is not None
    finally:
        server.stop(kill=True)


def test_out_of_attempts_fails_then_retry_command_sends(store: Database, tmp_path: Path) -> None:
    from ivcontrast.cli import main

    server = Orthanc(tmp_path / "orthanc")
    settings = node(tmp_path, [pacs(server)], backoff_seconds=0.0, max_attempts=2)
    spooled = spool_series(store, settings.spool_path, 1)
    record_result(store, settings, spooled)
    assert run_worker(settings, store) == 2  # both attempts, no delay
    (job,) = jobs(store)
    assert (job.state, job.attempts) == (JobState.FAILED, 2)
    with store.session() as session:
        assert session.get(Series, spooled.series_id).state == "classified"  # not the series

    base = ["--data-dir", str(tmp_path / "data")]
    assert main([*base, "writeback", "retry", "--all-failed"]) == 0
    (job,) = jobs(store)
    assert (job.state, job.attempts, job.error) == (JobState.PENDING, 0, None)
    server.start()
    try:
        assert run_worker(settings, store) == 1
        assert jobs(store)[0].outcome == "sent"
    finally:
        server.stop(kill=True)


@pytest.mark.parametrize(
    ("destination", "reason"),
    [
        ({"ae_title": "WRONG"}, "Called AE title not recognised"),
        ({"calling_ae": "STRANGER"}, "Calling AE title not recognised"),
    ],
)
def test_rejected_association_fails_for_good_with_the_reason(
    orthanc: Orthanc, store: Database, tmp_path: Path, destination: dict[str, str], reason: str
) -> None:
    settings = node(tmp_path, [pacs(orthanc, **destination)], max_attempts=5)
    spooled = spool_series(store, settings.spool_path, 1)
    record_result(store, settings, spooled)
    assert run_worker(settings, store) == 1
    (job,) = jobs(store)
    assert (job.state, job.attempts) == (JobState.FAILED, 1)  # no retry can fix this
    assert reason in (job.error or "")
    (row,) = writebacks(store)
    assert row.outcome == "failed" and reason in (row.error or "")
    assert study_instance_count(orthanc, spooled.study_uid) == 0


def test_nothing_is_sent_when_writeback_is_off(
    orthanc: Orthanc, store: Database, tmp_path: Path
) -> None:
    on = node(tmp_path, [pacs(orthanc)], trigger="all")
    off = node(tmp_path, [pacs(orthanc)], enabled=False, trigger="all")
    spooled = spool_series(store, on.spool_path, 2)
    assert record_result(store, off, spooled) == 0
    assert jobs(store) == []
    # Jobs queued while it was on are not taken by a worker started with it off.
    with store.write() as session:
        result = make_result(spooled.series_id, version=2)
        session.add(result)
        assert enqueue_writeback(session, on.writeback, result) == 1
    assert "writeback" not in build_handlers(off, store)
    assert run_worker(off, store) == 0
    assert jobs(store)[0].state == JobState.PENDING
    assert study_instance_count(orthanc, spooled.study_uid) == 0


# -- DICOM TLS --------------------------------------------------------------------------------


def test_tls_destination(store: Database, tmp_path: Path) -> None:
    pki = make_certificates(tmp_path / "pki")
    if pki is None:
        pytest.skip("openssl is not installed")
    server = Orthanc(tmp_path / "orthanc", tls=pki)
    server.start()
    try:
        tls = {"tls": True, "tls_ca": str(pki.ca)}
        client = {"tls_cert": str(pki.client_cert), "tls_key": str(pki.client_key)}
        settings = node(
            tmp_path,
            [
                pacs(server, **tls, **client),
                pacs(server, name="plain"),  # a TLS port does not talk plain DICOM
                pacs(server, name="nocert", **tls),  # Orthanc requires a client certificate
            ],
            report=False,
        )
        spooled = spool_series(store, settings.spool_path, 2)
        assert record_result(store, settings, spooled) == 3
        run_worker(settings, store)
        outcome = {row.destination: row for row in writebacks(store)}
        assert outcome["pacs"].outcome == "sent", outcome["pacs"].error
        assert server.series_by_uid(outcome["pacs"].copies_series_uid) is not None
        assert outcome["plain"].outcome == "failed" and outcome["nocert"].outcome == "failed"
    finally:
        server.stop(kill=True)


# -- the worker process -----------------------------------------------------------------------


def test_worker_process_with_a_toml_config(
    orthanc: Orthanc, store: Database, tmp_path: Path
) -> None:
    config = tmp_path / "ivcontrast.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        '[scp]\nae_title = "IVCONTRAST"\n'
        '[writeback]\nenabled = true\ntrigger = "disagreements"\n'
        "[[writeback.destinations]]\n"
        f'kind = "dicom"\nname = "pacs"\nae_title = "{orthanc.aet}"\n'
        f'host = "127.0.0.1"\nport = {orthanc.dicom_port}\n'
    )
    settings = load_settings(config, env={})
    spooled = spool_series(store, settings.spool_path, 2, contrast_agent="IOPAMIDOL")
    assert record_result(store, settings, spooled, tag_status="agrees") == 0  # not selected
    with store.write() as session:
        session.execute(update(Series).where(Series.id == spooled.series_id).values(version=2))
    assert (
        record_result(
            store,
            settings,
            spooled,
            version=2,
            label="no_contrast",
            probability=0.01,
            tag_status="disagrees",
        )
        == 1
    )
    subprocess.run(
        [sys.executable, "-m", "ivcontrast", "-c", str(config), "worker", "--once", "--no-sweep"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (row,) = writebacks(store)
    assert row.outcome == "sent" and row.series_version == 2
    copies = orthanc.series_by_uid(row.copies_series_uid)
    assert orthanc.instance_tags(copies["Instances"][0])["ContrastBolusAgent"] == "NONE"
