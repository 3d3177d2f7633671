"""The review state and the physics opinion through the HTTP API, in process over SQLite:
the label filter, the physics fields, the series detail, the circled blood pool, the export,
the summary and the metrics."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ivcontrast.store.db import Database
from ivcontrast.web import create_app
from tests.support.review_store import Review, add_review_series
from tests.support.web_store import web_settings


@dataclass
class ReviewNode:
    review: Review
    client: TestClient


@pytest.fixture(scope="module")
def review_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewNode]:
    """A store of two series: one in review, one whose physics opinion found no blood pool."""
    data = tmp_path_factory.mktemp("review")
    settings = web_settings(data)
    db = Database(settings.db_url)
    db.upgrade()
    review = add_review_series(db, settings.spool_path)
    with TestClient(create_app(settings, db)) as client:
        yield ReviewNode(review, client)
    db.dispose()


def rget(node: ReviewNode, url: str, status: int = 200) -> dict:
    response = node.client.get(url)
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def test_review_is_a_label_filter_with_the_physics_fields(review_node: ReviewNode) -> None:
    r = review_node.review
    [item] = rget(review_node, "/api/results?label=review")["items"]
    assert (item["series_uid"], item["label"], item["network_label"]) == (
        r.review,
        "review",
        "contrast",
    )
    assert item["review_reasons"] == r.reasons
    assert (item["physics_label"], item["physics_hu"]) == ("no_contrast", 41.3)
    assert item["physics_structure"] == "chest vessel (aorta or heart)"
    assert item["physics"]["slice_index"] == 4 and item["physics"]["found"] is True
    listed = rget(review_node, "/api/series?label=review")["items"]
    assert [s["series_uid"] for s in listed] == [r.review]
    assert listed[0]["result"]["physics_hu"] == 41.3
    assert listed[0]["result"]["review_reasons"] == r.reasons
    contrast = rget(review_node, "/api/results?label=contrast")["items"]
    assert [i["series_uid"] for i in contrast] == [r.not_found]
    assert contrast[0]["physics"]["found"] is False and contrast[0]["physics_hu"] is None
    rget(review_node, "/api/results?label=maybe", 422)


def test_series_detail_has_the_physics_opinion_and_its_picture(review_node: ReviewNode) -> None:
    r = review_node.review
    detail = rget(review_node, f"/api/series/{r.review}")
    [result] = detail["results"]
    assert result["label"] == "review" and result["physics"]["radius_mm"] == r.physics["radius_mm"]
    assert result["physics"]["reason"] == r.physics["reason"]
    assert detail["physics_thumbnail"] == f"/series/{r.review}/physics.png"
    other = rget(review_node, f"/api/series/{r.not_found}")
    assert other["physics_thumbnail"] is None
    assert other["results"][0]["physics"]["reason"].startswith("no blood pool found")


def test_the_physics_thumbnail_circles_the_blood_pool(review_node: ReviewNode) -> None:
    r = review_node.review
    url = f"/series/{r.review}/physics.png?size=128"
    response = review_node.client.get(url)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)
    assert image.shape == (128, 128, 3)
    amber = (image[..., 0] > 200) & (image[..., 1] > 150) & (image[..., 2] < 60)
    ys, xs = np.nonzero(amber)
    assert len(ys) > 20  # a ring ...
    row, col, radius_px = r.physics["row"], r.physics["col"], r.physics["radius_mm"] / (500 / 128)
    distance = np.hypot(ys + 0.5 - (row + 0.5), xs + 0.5 - (col + 0.5))
    assert abs(np.median(distance) - radius_px) < 2.0  # ... around the aorta, of its radius
    assert not amber[int(row), int(col)]  # the vessel itself stays visible
    etag = response.headers["etag"]
    again = review_node.client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    missing = rget(review_node, f"/series/{r.not_found}/physics.png", 404)
    assert "no blood pool" in missing["detail"]
    rget(review_node, "/series/1.2.3/physics.png", 404)


def test_the_export_summary_and_metrics_count_review(review_node: ReviewNode) -> None:
    r = review_node.review
    response = review_node.client.get("/api/results/export?label=review&format=csv")
    [row] = list(csv.DictReader(io.StringIO(response.text)))
    assert row["label"] == "review" and row["review_reasons"] == "; ".join(r.reasons)
    assert json.loads(row["physics"])["hu"] == 41.3 and row["physics_hu"] == "41.3"
    exported = json.loads(review_node.client.get("/api/results/export?format=json").text)
    assert {e["label"] for e in exported} == {"review", "contrast"}
    summary = rget(review_node, "/api/summary")
    assert summary["results_by_label"] == {"contrast": 1, "review": 1}
    assert summary["in_review"] == 1
    text = review_node.client.get("/metrics").text
    assert 'ivcontrast_current_results{label="review"} 1' in text
    assert 'ivcontrast_current_results{label="no_contrast"} 0' in text
    assert 'ivcontrast_results_total{label="review",tag_status="missing"} 1' in text
