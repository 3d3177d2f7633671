"""The web app over a store filled by the real ingest and worker code.

Files go into the spool and through ``store.ingest`` as the listener records them; the real
worker completes the series and checks eligibility; the result row is written as the
classify job writes it, with z taken from the classifier's own DICOM reader. The API must
then agree with all of them: states and reasons, counters, the z convention of the curve
and the thumbnails, and a re-opened series.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ivcontrast.classifier.dicom_series import DicomSeries
from ivcontrast.scp.header import instance_header, read_file_header
from ivcontrast.scp.spool import relative_path
from ivcontrast.store.db import Database
from ivcontrast.store.ingest import close_association, open_association, record_instance
from ivcontrast.store.models import AssociationState, Job, Result, Series, SeriesState
from ivcontrast.store.values import AssociationInfo, StoredFile
from ivcontrast.web import create_app
from ivcontrast.worker.jobs import CHECK
from ivcontrast.worker.service import Worker, build_handlers
from tests.support.web_store import phantom_hu, uid, web_settings, write_slice


def write_series(spool: Path, study: str, count: int, contrast: bool) -> tuple[str, list[Path]]:
    series = uid()
    paths = []
    for i in range(count):
        sop = uid()
        path = spool / relative_path(study, series, sop)
        # Positions run downwards with the instance number, as many scanners write them.
        write_slice(
            path,
            study_uid=study,
            series_uid=series,
            sop_uid=sop,
            index=i,
            z=-2.5 * i,
            hu=phantom_hu(64, 1 - i / max(count - 1, 1), contrast, seed=i),
            contrast_agent="N",
        )
        paths.append(path)
    return series, paths


def ingest(db: Database, spool: Path, paths: list[Path], association_id: str) -> None:
    """What the listener does after writing each file: index it."""
    for path in paths:
        ds, syntax = read_file_header(path)
        data = path.read_bytes()
        stored = StoredFile(
            str(path.relative_to(spool)), len(data), hashlib.sha256(data).hexdigest()
        )
        record_instance(db, instance_header(ds, syntax), stored, association_id)


@dataclass
class Node:
    client: TestClient
    db: Database
    spool: Path
    ct: str
    short: str
    ct_paths: list[Path]
    association: str


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    settings = web_settings(tmp_path, **{"worker.quiet_seconds": 0, "worker.settle_seconds": 0})
    db = Database(settings.db_url)
    db.upgrade()
    spool = settings.spool_path
    study = uid()
    ct, ct_paths = write_series(spool, study, 12, contrast=True)
    short, short_paths = write_series(spool, study, 3, contrast=False)
    assoc = str(uuid.uuid4())
    open_association(
        db, AssociationInfo(assoc, "test:1", "MODALITY", "IVCONTRAST", "127.0.0.1", 50000)
    )
    ingest(db, spool, ct_paths + short_paths, assoc)
    close_association(db, assoc, AssociationState.RELEASED)
    # The eligibility stage only: the classify job's effect is written below with known values.
    handlers = build_handlers(settings, db)
    Worker(settings, db, {CHECK: handlers[CHECK]}).run_until_idle()

    # The classify job's effect, with z along the normal as the classifier computes it.
    z = DicomSeries.open(ct_paths).geometry.z_mm
    probs = np.linspace(0.9, 0.6, len(z))
    with db.write() as session:
        series = session.scalars(select(Series).where(Series.series_uid == ct)).one()
        assert series.state == SeriesState.ELIGIBLE
        job = session.scalars(
            select(Job).where(Job.series_id == series.id, Job.kind == "classify")
        ).one()
        job.state, job.outcome = "done", "classified"
        series.state = SeriesState.CLASSIFIED
        session.add(
            Result(
                series_id=series.id,
                series_version=series.version,
                model_name="m",
                model_version="1",
                probability=float(probs.mean()),
                label="contrast",
                threshold=0.5,
                aggregation="mean",
                slices_used=len(z),
                slice_probabilities=[[float(a), float(b)] for a, b in zip(z, probs, strict=True)],
                original_contrast_agent="N",
                tag_status="disagrees",
                total_seconds=1.0,
            )
        )
    with TestClient(create_app(settings, db)) as client:
        yield Node(client, db, spool, ct, short, ct_paths, assoc)
    db.dispose()


def test_api_agrees_with_the_ingest_and_the_worker(
    node: Node,
) -> None:
    client = node.client
    page = client.get("/api/series").json()
    states = {item["series_uid"]: (item["state"], item["skip_reason"]) for item in page["items"]}
    assert states == {
        node.ct: ("classified", None),
        node.short: ("skipped", "too few slices (3 < 10)"),
    }
    detail = client.get(f"/api/series/{node.ct}").json()
    assert detail["instance_stats"]["count"] == 12 and detail["instances"] == 12
    assert [(a["id"], a["state"], a["instances_in_series"]) for a in detail["associations"]] == [
        (node.association, "released", 12)
    ]
    assert [(j["kind"], j["state"]) for j in detail["jobs"]] == [
        ("check", "done"),
        ("classify", "done"),
    ]
    assert detail["completed_at"] is not None

    # One z convention: the thumbnails' positions (from the indexed headers) are among the
    # curve's (from the classifier's reader), and the lowest z comes first in both.
    curve_z = [p["z_mm"] for p in detail["results"][0]["slice_probabilities"]]
    thumb_z = [t["z_mm"] for t in detail["thumbnails"]]
    assert curve_z == sorted(curve_z) and thumb_z == sorted(thumb_z)
    assert all(min(abs(t - c) for c in curve_z) < 1e-6 for t in thumb_z)
    for t in detail["thumbnails"]:
        assert client.get(t["url"]).status_code == 200

    text = client.get("/metrics").text
    assert "ivcontrast_instances_received_total 15" in text
    assert 'ivcontrast_series{state="skipped"} 1' in text
    assert 'ivcontrast_jobs{kind="check",state="done"} 2' in text


def test_a_replaced_instance_reopens_the_series_and_shows_as_such(
    node: Node,
) -> None:
    client, db = node.client, node.db
    path = node.ct_paths[5]
    ds, syntax = read_file_header(path)
    later = str(uuid.uuid4())
    open_association(
        db, AssociationInfo(later, "test:1", "MODALITY", "IVCONTRAST", "127.0.0.1", 50001)
    )
    record_instance(
        db,
        instance_header(ds, syntax),
        StoredFile(str(path.relative_to(node.spool)), 10, "0" * 64),
        later,
    )
    detail = client.get(f"/api/series/{node.ct}").json()
    assert detail["version"] == 2 and detail["state"] == "receiving"
    assert detail["result"]["current"] is False and detail["result"]["series_version"] == 1
    kinds = {e["kind"] for e in client.get(f"/api/events?series_uid={node.ct}").json()["items"]}
    assert {"instance_replaced", "series_reopened"} <= kinds
    page = client.get(f"/series/{node.ct}").text
    assert "re-opened by late images" in page
