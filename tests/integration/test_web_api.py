"""The HTTP API over a filled store: filters, paging, detail, export, thumbnails, health,
metrics, privacy and the token."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ivcontrast.config import Settings
from ivcontrast.store.db import Database
from ivcontrast.web import create_app
from tests.support.web_store import (
    PATIENT_ID,
    PATIENT_NAME,
    Filled,
    fill_store,
    model_package,
    web_settings,
)

SECRET_WORDS = (PATIENT_NAME, PATIENT_ID, "Roe^Richard", "PID999")


@dataclass
class Node:
    settings: Settings
    db: Database
    filled: Filled
    client: TestClient


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    data = tmp_path_factory.mktemp("node")
    settings = web_settings(data, **{"classifier.model": str(model_package(data / "model"))})
    db = Database(settings.db_url)
    db.upgrade()
    filled = fill_store(db, settings.spool_path)
    with TestClient(create_app(settings, db)) as client:
        yield Node(settings, db, filled, client)
    db.dispose()


def get(node: Node, url: str, status: int = 200) -> object:
    response = node.client.get(url)
    assert response.status_code == status, response.text
    return response.json()


def uids(page: object) -> set[str]:
    assert isinstance(page, dict)
    return {item["series_uid"] for item in page["items"]}


# -- series -------------------------------------------------------------------------------


def test_series_list_is_newest_first_with_state_and_newest_result(node: Node) -> None:
    page = get(node, "/api/series")
    assert isinstance(page, dict)
    assert page["total"] == len(node.filled.all) == 8
    times = [item["last_received_at"] for item in page["items"]]
    assert times == sorted(times, reverse=True)
    by_uid = {item["series_uid"]: item for item in page["items"]}
    contrast = by_uid[node.filled.contrast]
    assert contrast["state"] == "classified" and contrast["instances"] == node.filled.slices
    assert contrast["result"]["label"] == "contrast"
    assert contrast["result"]["tag_status"] == "disagrees"
    assert contrast["result"]["original_contrast_agent"] == "NONE"
    assert by_uid[node.filled.skipped]["skip_reason"] == "localizer/scout"
    assert "cannot decode" in by_uid[node.filled.failed]["error"]
    assert by_uid[node.filled.receiving]["result"] is None
    # Version 2 of this series has a new call; the list shows the newest.
    assert by_uid[node.filled.missing_tag]["result"]["series_version"] == 2
    assert by_uid[node.filled.missing_tag]["result"]["label"] == "contrast"
    # Re-opened after its result: the call is shown, marked as not current.
    assert by_uid[node.filled.reopened]["result"]["current"] is False


@pytest.mark.parametrize(
    ("query", "roles"),
    [
        ("state=classified", ["contrast", "plain", "missing_tag"]),
        ("state=receiving&state=failed", ["reopened", "receiving", "failed"]),
        ("label=contrast", ["contrast", "missing_tag", "reopened"]),
        ("label=no_contrast", ["plain"]),
        ("tag_status=disagrees", ["contrast"]),
        ("tag_status=missing&label=contrast", ["missing_tag"]),
        ("accession=ACC7002", ["eligible"]),
        ("modality=MR", []),
    ],
)
def test_series_filters(node: Node, query: str, roles: list[str]) -> None:
    page = get(node, f"/api/series?{query}")
    assert uids(page) == {getattr(node.filled, role) for role in roles}
    assert isinstance(page, dict) and page["total"] == len(roles)


def test_series_filters_by_uid_and_time(node: Node) -> None:
    f = node.filled
    assert uids(get(node, f"/api/series?series_uid={f.plain}")) == {f.plain}
    in_study = uids(get(node, f"/api/series?study_uid={f.study_uid}"))
    assert f.eligible not in in_study and len(in_study) == 7
    newest = get(node, "/api/series?limit=1")
    assert isinstance(newest, dict)
    cut = newest["items"][0]["last_received_at"]
    assert uids(get(node, f"/api/series?since={cut}")) == {f.receiving}
    assert f.receiving not in uids(get(node, f"/api/series?until={cut}&limit=100"))
    assert get(node, "/api/series?since=2999-01-01")["total"] == 0  # type: ignore[index]
    get(node, "/api/series?since=yesterday", 422)
    get(node, "/api/series?since=1700000000", 422)  # not a Unix time: ISO 8601 only
    # Offsets that push a time past year 1 or 9999 bound nothing, and are no server error.
    assert get(node, "/api/series?since=0001-01-01T00:00:00%2B05:00")["total"] == 8  # type: ignore[index]
    assert get(node, "/api/series?until=9999-12-31T23:00:00-05:00")["total"] == 8  # type: ignore[index]
    get(node, "/api/series?series_uid=1.2.x", 422)
    get(node, "/api/series?state=lost", 422)


def test_unknown_or_repeated_parameters_are_errors_not_ignored(node: Node) -> None:
    typo = get(node, "/api/series?lable=contrast", 422)
    assert typo["detail"][0]["loc"] == ["query", "lable"]  # type: ignore[index]
    get(node, "/api/series?label=contrast&label=no_contrast", 422)
    assert get(node, "/api/series?state=failed&state=skipped")["total"] == 2  # type: ignore[index]
    get(node, "/metrics?x=1", 422)


def test_paging_splits_without_overlap(node: Node) -> None:
    first = get(node, "/api/series?limit=3&offset=0")
    second = get(node, "/api/series?limit=3&offset=3")
    last = get(node, "/api/series?limit=3&offset=6")
    assert isinstance(first, dict) and isinstance(second, dict) and isinstance(last, dict)
    assert first["total"] == second["total"] == 8
    assert len(first["items"]) == len(second["items"]) == 3 and len(last["items"]) == 2
    assert uids(first) | uids(second) | uids(last) == set(node.filled.all)
    get(node, "/api/series?limit=0", 422)
    get(node, "/api/series?limit=1001", 422)


def test_one_series_with_instances_associations_jobs_and_slice_probabilities(node: Node) -> None:
    f = node.filled
    d = get(node, f"/api/series/{f.contrast}")
    assert isinstance(d, dict)
    assert d["instance_stats"]["count"] == f.slices
    assert d["instance_stats"]["transfer_syntaxes"] == ["1.2.840.10008.1.2.1"]
    assert [(a["id"], a["instances_in_series"]) for a in d["associations"]] == [
        (f.association_id, f.slices)
    ]
    assert [(j["kind"], j["state"]) for j in d["jobs"]] == [
        ("check", "done"),
        ("classify", "done"),
        ("writeback", "done"),
        ("writeback", "failed"),
    ]
    assert "association rejected" in d["jobs"][3]["error"]
    assert [(w["destination"], w["outcome"], w["instances_sent"]) for w in d["writebacks"]] == [
        ("orthanc", "sent", f.slices),
        ("pacs", "failed", 0),
    ]
    (result,) = d["results"]
    curve = result["slice_probabilities"]
    assert len(curve) == f.slices == result["slices_used"]
    zs = [p["z_mm"] for p in curve]
    assert zs == sorted(zs)
    # The stored scan probability is the mean of the slices (as the fill recorded it).
    assert np.mean([p["probability"] for p in curve]) == pytest.approx(result["probability"])
    thumbs = d["thumbnails"]
    assert len(thumbs) == node.settings.web.thumbnails
    assert [t["index"] for t in thumbs] == list(range(len(thumbs)))
    assert [t["z_mm"] for t in thumbs] == sorted(t["z_mm"] for t in thumbs)
    assert min(zs) <= thumbs[0]["z_mm"] and thumbs[-1]["z_mm"] <= max(zs)

    history = get(node, f"/api/series/{f.missing_tag}")
    assert isinstance(history, dict)
    assert [(r["series_version"], r["label"], r["current"]) for r in history["results"]] == [
        (2, "contrast", True),
        (1, "no_contrast", False),
    ]
    get(node, "/api/series/1.2.3.4", 404)
    get(node, "/api/series/not-a-uid", 422)


# -- results ------------------------------------------------------------------------------


def test_results_newest_version_by_default_every_version_on_request(node: Node) -> None:
    f = node.filled
    latest = get(node, "/api/results")
    every = get(node, "/api/results?all_versions=true")
    assert isinstance(latest, dict) and isinstance(every, dict)
    assert latest["total"] == 4 and every["total"] == 5
    assert uids(get(node, "/api/results?label=no_contrast")) == {f.plain}
    assert uids(get(node, "/api/results?label=no_contrast&all_versions=true")) == {
        f.plain,
        f.missing_tag,
    }
    assert uids(get(node, "/api/results?tag_status=disagrees")) == {f.contrast}
    assert uids(get(node, f"/api/results?accession={f.accession}")) == {
        f.contrast,
        f.plain,
        f.missing_tag,
        f.reopened,
    }
    assert get(node, "/api/results?since=2999-01-01T00:00:00Z")["total"] == 0  # type: ignore[index]


def test_results_export_as_csv_and_json(node: Node) -> None:
    response = node.client.get("/api/results/export?format=csv&tag_status=disagrees")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["series_uid"] for r in rows] == [node.filled.contrast]
    assert rows[0]["label"] == "contrast" and rows[0]["tag_status"] == "disagrees"
    assert float(rows[0]["probability"]) > 0.5
    assert "patient_name" not in rows[0]

    everything = node.client.get("/api/results/export?format=json&all_versions=true")
    assert everything.status_code == 200
    items = json.loads(everything.text)
    assert len(items) == 5
    assert {i["series_uid"] for i in items} == {
        node.filled.contrast,
        node.filled.plain,
        node.filled.missing_tag,
        node.filled.reopened,
    }
    assert all("patient_name" not in i for i in items)


# -- activity -----------------------------------------------------------------------------


def test_associations_jobs_events_workers_summary(node: Node) -> None:
    f = node.filled
    assocs = get(node, "/api/associations")
    assert isinstance(assocs, dict) and assocs["total"] == 2
    rejected = get(node, "/api/associations?state=rejected")
    assert isinstance(rejected, dict)
    assert [a["reason"] for a in rejected["items"]] == ["calling AE 'UNKNOWN' is not allowed"]

    failed = get(node, "/api/jobs?state=failed")
    assert isinstance(failed, dict) and failed["total"] == 2
    assert all(j["error"] for j in failed["items"])
    assert {j["series_uid"] for j in failed["items"]} == {f.contrast, f.failed}
    wb = get(node, "/api/jobs?kind=writeback")
    assert isinstance(wb, dict) and {j["outcome"] for j in wb["items"]} == {"sent", "failed"}

    events = get(node, f"/api/events?series_uid={f.reopened}")
    assert isinstance(events, dict) and [e["kind"] for e in events["items"]] == ["series_reopened"]

    workers = get(node, "/api/workers")
    assert isinstance(workers, list) and [w["id"] for w in workers] == ["host:42:abcd"]
    assert workers[0]["kinds"] == ["check", "classify"]
    assert len(get(node, "/api/workers?include_stopped=true")) == 2  # type: ignore[arg-type]

    summary = get(node, "/api/summary")
    assert isinstance(summary, dict)
    assert summary["series_by_state"] == {
        "classified": 3,
        "receiving": 2,
        "skipped": 1,
        "failed": 1,
        "eligible": 1,
    }
    assert summary["results_by_label"] == {"contrast": 3, "no_contrast": 1}
    assert summary["results_by_tag_status"] == {"disagrees": 1, "agrees": 2, "missing": 1}


# -- thumbnails ---------------------------------------------------------------------------


def _thumb(node: Node, uid: str, k: int, size: int = 192) -> np.ndarray:
    response = node.client.get(f"/series/{uid}/thumbnails/{k}.png?size={size}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_thumbnails_show_enhancement_in_the_soft_tissue_window(node: Node) -> None:
    f = node.filled
    contrast = _thumb(node, f.contrast, 0)
    plain = _thumb(node, f.plain, 0)
    assert contrast.shape == plain.shape == (192, 192)
    # The aorta of the phantom (see web_store.phantom_hu): enhanced 260 HU is white in
    # W400/L40, unenhanced 42 HU is mid-grey; air outside the body is black.
    y, x = int(192 / 2 + 192 * 0.03 + 192 * 0.08), int(192 / 2 + 192 * 0.04)
    assert contrast[y - 1 : y + 2, x - 1 : x + 2].mean() > 235
    assert 100 < plain[y - 1 : y + 2, x - 1 : x + 2].mean() < 160
    assert contrast[:5, :5].max() == 0
    small = _thumb(node, f.contrast, 3, size=64)
    assert max(small.shape) == 64


def test_thumbnail_caching_and_errors(node: Node) -> None:
    f = node.filled
    first = node.client.get(f"/series/{f.plain}/thumbnails/2.png")
    etag = first.headers["etag"]
    again = node.client.get(f"/series/{f.plain}/thumbnails/2.png", headers={"If-None-Match": etag})
    assert again.status_code == 304
    other = node.client.get(f"/series/{f.plain}/thumbnails/3.png")
    assert other.headers["etag"] != etag
    get(node, f"/series/{f.plain}/thumbnails/8.png", 404)  # 8 thumbnails: 0..7
    get(node, "/series/1.2.3/thumbnails/0.png", 404)
    # Indexed, but the file is not in the spool.
    missing = get(node, f"/series/{f.skipped}/thumbnails/0.png", 422)
    assert "not found" in missing["detail"]  # type: ignore[index]


# -- health and metrics -------------------------------------------------------------------


def test_health_passes_with_database_spool_worker_and_model(node: Node) -> None:
    report = get(node, "/health")
    assert isinstance(report, dict)
    checks = report["checks"]
    assert report["status"] == "ok", checks
    assert checks["database"]["data"]["series"] == 8
    assert checks["spool"]["data"]["free_mb"] >= node.settings.scp.min_free_mb
    assert checks["workers"]["data"]["live"] == 1
    assert checks["model"]["data"]["loaded_by"] == ["host:42:abcd"]
    assert checks["model"]["data"]["name"] == "ivcontrast-effnet-b0"


def test_health_model_check_names_what_is_wrong(node: Node, tmp_path: Path) -> None:
    broken = model_package(tmp_path / "broken")
    (broken / "model.onnx").unlink()
    settings = web_settings(node.settings.data_dir, **{"classifier.model": str(broken)})
    with TestClient(create_app(settings, node.db)) as client:
        model = client.get("/health").json()["checks"]["model"]
    assert model["status"] == "fail" and "model.onnx: missing" in model["detail"]


def test_every_page_says_so_while_the_model_was_trained_on_phantoms_only(
    node: Node, tmp_path: Path
) -> None:
    # The test node's package has no training data recorded: no notice.
    assert 'class="notice"' not in node.client.get("/").text
    phantoms = model_package(tmp_path / "phantoms")
    card = json.loads((phantoms / "card.json").read_text())
    card["training_data"] = {"synthetic": {"series": 480}}
    card["intended_use"] = "Trained on synthetic CT phantoms only; validate it before use."
    (phantoms / "card.json").write_text(json.dumps(card))
    settings = web_settings(node.settings.data_dir, **{"classifier.model": str(phantoms)})
    with TestClient(create_app(settings, node.db)) as client:
        for url in ("/", "/series", "/jobs", "/associations"):
            page = client.get(url).text
            assert "Model ivcontrast-effnet-b0 1.0.0: Trained on synthetic CT phantoms only" in page
        model = client.get("/health").json()["checks"]["model"]["data"]
    assert model["synthetic_only"] is True and "validate" in model["intended_use"]
    # Fine-tuned on a few real series (sources recorded): the notice stays.
    card["training_data"]["sources"] = [{"path": "labels.csv", "sha256": "0" * 64}]
    card["training_data"]["train"] = {"series": 11}
    (phantoms / "card.json").write_text(json.dumps(card))
    with TestClient(create_app(settings, node.db)) as client:
        assert 'class="notice"' in client.get("/").text
    # Fine-tuned on a site's own CT, hundreds of series: the notice goes.
    card["training_data"]["train"] = {"series": 900}
    (phantoms / "card.json").write_text(json.dumps(card))
    with TestClient(create_app(settings, node.db)) as client:
        assert 'class="notice"' not in client.get("/").text


def test_health_warns_when_no_worker_has_the_classifier(node: Node) -> None:
    from ivcontrast.store.models import Worker

    with node.db.write() as session:
        session.get(Worker, "host:42:abcd").kinds = "check"  # type: ignore[union-attr]
    try:
        response = node.client.get("/health")
    finally:
        with node.db.write() as session:
            session.get(Worker, "host:42:abcd").kinds = "check,classify"  # type: ignore[union-attr]
    assert response.status_code == 200  # a warning is not a failure
    model = response.json()["checks"]["model"]
    assert model["status"] == "warn" and "no live worker" in model["detail"]


@pytest.mark.parametrize(
    ("overrides", "failing"),
    [
        ({"scp.min_free_mb": 2**40}, "spool"),
        ({"web.worker_stale_seconds": 0.5}, "workers"),
        ({"classifier.model": "/nonexistent/model"}, "model"),
    ],
)
def test_health_fails_with_503_and_says_which_check(
    node: Node, overrides: dict[str, object], failing: str
) -> None:
    merged = {"classifier.model": node.settings.classifier.model, **overrides}
    settings = web_settings(node.settings.data_dir, **merged)
    with TestClient(create_app(settings, node.db)) as client:
        response = client.get("/health")
    assert response.status_code == 503
    report = response.json()
    assert report["status"] == "fail"
    assert [name for name, c in report["checks"].items() if c["status"] == "fail"] == [failing]


def test_health_when_the_database_is_gone(tmp_path: Path) -> None:
    settings = web_settings(tmp_path, database_url=f"sqlite:///{tmp_path}/no/such/dir/x.db")
    db = Database(f"sqlite:///{tmp_path}/never.db")  # never migrated: no tables
    with TestClient(create_app(settings, db)) as client:
        response = client.get("/health")
    db.dispose()
    assert response.status_code == 503
    assert response.json()["checks"]["database"]["status"] == "fail"
    assert response.json()["checks"]["workers"]["status"] == "fail"


def _metrics(node: Node) -> dict[str, float]:
    response = node.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_are_computed_from_the_store(node: Node) -> None:
    m = _metrics(node)
    f = node.filled
    assert m["ivcontrast_instances_received_total"] == f.slices * 4 + 2  # as the fill recorded
    assert m["ivcontrast_instances_stored"] == 4 * f.slices + 1 + 3 + 5 + 12
    assert m['ivcontrast_associations{state="rejected"}'] == 1
    assert m['ivcontrast_series{state="classified"}'] == 3
    assert m['ivcontrast_results_total{label="contrast",tag_status="missing"}'] == 1
    assert m['ivcontrast_results_total{label="no_contrast",tag_status="missing"}'] == 1
    assert sum(v for k, v in m.items() if k.startswith("ivcontrast_results_total")) == 5
    # Histogram of the five results' total_seconds: 0.4, 0.8, 1.4, 2.6, 4.2.
    assert m["ivcontrast_classification_seconds_count"] == 5
    assert m["ivcontrast_classification_seconds_sum"] == pytest.approx(9.4)
    assert m['ivcontrast_classification_seconds_bucket{le="0.5"}'] == 1
    assert m['ivcontrast_classification_seconds_bucket{le="1"}'] == 2
    assert m['ivcontrast_classification_seconds_bucket{le="3"}'] == 4
    assert m['ivcontrast_classification_seconds_bucket{le="+Inf"}'] == 5
    assert m['ivcontrast_jobs{kind="classify",state="pending"}'] == 1
    assert m['ivcontrast_writeback_jobs{state="failed",outcome="failed"}'] == 1
    assert m['ivcontrast_writeback_jobs{state="done",outcome="sent"}'] == 1
    assert m['ivcontrast_writebacks{destination="pacs",outcome="failed"}'] == 1
    assert m['ivcontrast_writebacks{destination="orthanc",outcome="sent"}'] == 1
    assert m['ivcontrast_queue_oldest_pending_seconds{kind="classify"}'] >= 600
    ages = {k: v for k, v in m.items() if k.startswith("ivcontrast_worker_heartbeat_age")}
    assert list(ages) == ['ivcontrast_worker_heartbeat_age_seconds{worker="host:42:abcd"}']
    assert m["ivcontrast_spool_free_bytes"] > 0


def test_metrics_follow_new_rows_without_restart(node: Node) -> None:
    """Another process's writes show at the next scrape: nothing is cached in the app."""
    from ivcontrast.store.models import Association

    before = _metrics(node)['ivcontrast_associations{state="released"}']
    with node.db.write() as session:
        session.add(
            Association(
                id="later-0001",
                listener="other-host:7",
                calling_ae="CT1",
                called_ae="IVCONTRAST",
                peer_host="10.0.0.3",
                state="released",
                instances_received=3,
            )
        )
    after = _metrics(node)
    assert after['ivcontrast_associations{state="released"}'] == before + 1
    with node.db.write() as session:
        session.delete(session.get(Association, "later-0001"))


# -- privacy ------------------------------------------------------------------------------

PAGES = ["/", "/series", "/jobs", "/associations"]


def test_no_patient_names_or_ids_anywhere_by_default(node: Node) -> None:
    f = node.filled
    urls = [
        "/api/series",
        f"/api/series/{f.contrast}",
        "/api/results?all_versions=true",
        "/api/results/export?format=csv&all_versions=true",
        "/api/results/export?format=json&all_versions=true",
        "/api/events",
        "/api/associations",
        "/api/jobs",
        "/api/summary",
        *PAGES,
        f"/series/{f.contrast}",
        f"/series/{f.eligible}",
    ]
    for url in urls:
        text = node.client.get(url).text
        for word in SECRET_WORDS:
            assert word not in text, f"{word} in {url}"
            assert word.replace("^", " ") not in text, f"{word} in {url}"


def test_patient_names_when_configured(node: Node) -> None:
    settings = web_settings(node.settings.data_dir, **{"web.show_patient_names": True})
    with TestClient(create_app(settings, node.db)) as client:
        page = client.get(f"/api/series?series_uid={node.filled.contrast}").json()
        export = client.get("/api/results/export?format=csv&tag_status=disagrees").text
        html = client.get(f"/series/{node.filled.contrast}").text
    assert page["items"][0]["patient"] == {"name": PATIENT_NAME, "id": PATIENT_ID}
    row = next(csv.DictReader(io.StringIO(export)))
    assert (row["patient_name"], row["patient_id"]) == (PATIENT_NAME, PATIENT_ID)
    assert PATIENT_ID in html


# -- pages --------------------------------------------------------------------------------


def test_pages_render_and_filter_forms_accept_empty_fields(node: Node) -> None:
    f = node.filled
    for url in PAGES:
        response = node.client.get(url)
        assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    listing = node.client.get("/series?state=&label=&tag_status=disagrees&uid=&since=&until=")
    assert listing.status_code == 200
    assert f.contrast in listing.text and f.plain not in listing.text
    by_study = node.client.get(f"/series?uid={f.study_uid}").text
    assert f.contrast in by_study and f.eligible not in by_study
    jobs = node.client.get("/jobs?state=failed&kind=").text
    assert "association rejected" in jobs and "cannot decode pixel data" in jobs
    page = node.client.get(f"/series/{f.contrast}").text
    assert re.search(r'<path class="curve-line" d="M[0-9.]+,[0-9.]+( L[0-9.]+,[0-9.]+){23}"', page)
    assert page.count("<img data-thumb") == node.settings.web.thumbnails
    missing = node.client.get("/series/1.2.3.4")
    assert missing.status_code == 404 and "Not found" in missing.text
    assert node.client.get("/static/style.css").status_code == 200
    assert node.client.get("/static/app.js").status_code == 200


def test_openapi_schema_lists_the_api_and_hides_pages(node: Node) -> None:
    schema = get(node, "/openapi.json")
    assert isinstance(schema, dict)
    paths = set(schema["paths"])
    assert {
        "/api/series",
        "/api/series/{series_uid}",
        "/api/results",
        "/api/results/export",
        "/api/associations",
        "/api/jobs",
        "/api/events",
        "/series/{series_uid}/thumbnails/{index}.png",
        "/health",
        "/metrics",
    } <= paths
    assert "/" not in paths and "/login" not in paths
    assert "securitySchemes" not in schema.get("components", {})
    # The interactive docs would load scripts from a CDN: they are off.
    get(node, "/docs", 404)
