"""Write-back to a folder destination: real files, fsync + rename, dciodvfy; and the spool
problems that no retry can fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from ivcontrast.store.db import Database
from ivcontrast.store.models import JobState
from tests.support.writeback_data import (
    DCIODVFY,
    dciodvfy_errors,
    jobs,
    node,
    node_store,
    record_result,
    run_worker,
    spool_series,
    writebacks,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Database]:
    db = node_store(tmp_path)
    yield db
    db.dispose()


def test_folder_destination(store: Database, tmp_path: Path) -> None:
    out = tmp_path / "corrected"
    settings = node(tmp_path, [{"kind": "folder", "name": "archive", "path": str(out)}])
    spooled = spool_series(store, settings.spool_path, 3, contrast_agent="NO")
    before = spooled.digests()
    record_result(store, settings, spooled)
    assert run_worker(settings, store) == 1
    (row,) = writebacks(store)
    assert (row.outcome, row.instances_sent, row.report_sent) == ("sent", 3, True)
    copies = sorted((out / spooled.study_uid / row.copies_series_uid).iterdir())
    reports = list((out / spooled.study_uid / row.report_series_uid).iterdir())
    assert len(copies) == 3 and [r.name for r in reports] == [f"{row.report_sop_uid}.dcm"]
    assert not list(out.rglob(".*"))  # no temporary files left behind
    for path in copies:
        ds = dcmread(path)
        assert path.name == f"{ds.SOPInstanceUID}.dcm"
        assert ds.ContrastBolusAgent == "IV CONTRAST"
        assert ds.SeriesInstanceUID == row.copies_series_uid
    assert spooled.digests() == before
    if DCIODVFY:
        assert dciodvfy_errors(copies[0]) == [] and dciodvfy_errors(reports[0]) == []


def test_a_missing_spool_file_fails_for_good(store: Database, tmp_path: Path) -> None:
    settings = node(tmp_path, [{"kind": "folder", "name": "archive", "path": str(tmp_path / "o")}])
    spooled = spool_series(store, settings.spool_path, 2)
    spooled.files[1].unlink()
    record_result(store, settings, spooled)
    assert run_worker(settings, store) == 1
    (job,) = jobs(store)
    assert (job.state, job.attempts) == (JobState.FAILED, 1)
    assert "spooled instance is missing" in (job.error or "")
    (row,) = writebacks(store)
    assert row.outcome == "failed" and row.instances_sent == 1


def test_an_unreadable_spool_file_fails_for_good(store: Database, tmp_path: Path) -> None:
    settings = node(tmp_path, [{"kind": "folder", "name": "archive", "path": str(tmp_path / "o")}])
    spooled = spool_series(store, settings.spool_path, 1)
    spooled.files[0].write_bytes(b"not DICOM at all")
    record_result(store, settings, spooled)
    assert run_worker(settings, store) == 1
    (job,) = jobs(store)
    assert job.state == JobState.FAILED and "not a DICOM file" in (job.error or "")
    assert not list((tmp_path / "o").rglob("*.dcm")) and not list((tmp_path / "o").rglob(".*"))
