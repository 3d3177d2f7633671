"""``ivcontrast writeback list|retry`` over a real store."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, update

from ivcontrast.cli import main
from ivcontrast.config import load_settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import Job, JobState, Writeback, utcnow
from ivcontrast.writeback import enqueue_writeback
from tests.support.writeback_data import make_result, spool_series


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A store with two write-back jobs: job 1 failed (to 'pacs'), job 2 done (to 'out')."""
    data = tmp_path / "data"
    settings = load_settings(
        env={},
        overrides={
            "data_dir": str(data),
            "writeback.enabled": True,
            "writeback.destinations": [
                {"kind": "dicom", "name": "pacs", "ae_title": "PACS", "host": "h", "port": 104},
                {"kind": "folder", "name": "out", "path": str(tmp_path / "out")},
            ],
        },
    )
    db = Database(settings.db_url)
    db.upgrade()
    spooled = spool_series(db, settings.spool_path, 2)
    with db.write() as session:
        result = make_result(spooled.series_id)
        session.add(result)
        assert enqueue_writeback(session, settings.writeback, result) == 2
        session.flush()
        session.execute(
            update(Job)
            .where(Job.key == "pacs")
            .values(state=JobState.FAILED, attempts=5, error="pacs: 2 of 3 objects not stored")
        )
        session.execute(update(Job).where(Job.key == "out").values(state=JobState.DONE, attempts=1))
        session.execute(
            update(Writeback)
            .where(Writeback.destination == "pacs")
            .values(
                outcome="failed", last_status="0xA700", instances_total=2, attempted_at=utcnow()
            )
        )
        session.execute(
            update(Writeback)
            .where(Writeback.destination == "out")
            .values(outcome="sent", instances_total=2, instances_sent=2, report_sent=True)
        )
    db.dispose()
    return data


def run_cli(data: Path, *args: str) -> int:
    return main(["--data-dir", str(data), "writeback", *args])


def test_list_table_json_csv_and_filters(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(data_dir, "list") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["JOB", "STATE", "DESTINATION", "SERIES_UID"]
    assert len(table) == 3 and "0xA700" in table[2] and "5/5" in table[2]
    assert "2/2 +SR" in table[1]

    assert run_cli(data_dir, "list", "--format", "json", "--state", "failed") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["job"], row["state"], row["destination"], row["last_status"]) == (
        1,
        "failed",
        "pacs",
        "0xA700",
    )
    assert row["error"] == "pacs: 2 of 3 objects not stored"
    assert row["copies_series_uid"] and row["report_sop_uid"]

    assert run_cli(data_dir, "list", "--format", "csv", "--destination", "out") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["job"], r["state"], r["outcome"]) for r in rows] == [("2", "done", "sent")]


def test_retry_by_id_and_all_failed(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(data_dir, "retry", "2") == 1
    assert "job 2: not failed (it is done)" in capsys.readouterr().err
    assert run_cli(data_dir, "retry", "99") == 1
    assert "job 99: no such write-back job" in capsys.readouterr().err
    assert run_cli(data_dir, "retry") == 2
    assert run_cli(data_dir, "retry", "1") == 0
    assert "1 write-back job(s) queued again" in capsys.readouterr().out
    db = Database(f"sqlite:///{data_dir / 'ivcontrast.db'}")
    with db.session() as session:
        job = session.scalars(select(Job).where(Job.id == 1)).one()
        assert (job.state, job.attempts, job.error, job.finished_at) == (
            JobState.PENDING,
            0,
            None,
            None,
        )
    db.dispose()
    assert run_cli(data_dir, "retry", "--all-failed") == 0
    assert "0 write-back job(s) queued again" in capsys.readouterr().out


def test_list_as_a_subprocess(data_dir: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ivcontrast",
            "--data-dir",
            str(data_dir),
            "writeback",
            "list",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert {row["destination"] for row in json.loads(out.stdout)} == {"pacs", "out"}
