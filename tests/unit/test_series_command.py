"""``ivcontrast series``: the same list, order and filters as ``GET /api/series``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from ivcontrast.cli import main
from ivcontrast.config import load_settings
from ivcontrast.store.db import Database
from ivcontrast.store.models import Result, Series, SeriesState, Study
from ivcontrast.web import create_app

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def add_series(
    db: Database,
    uid: str,
    study: str,
    state: SeriesState,
    hours: int,
    results: Sequence[tuple[str, str]] = (),
) -> None:
    """A series last received ``hours`` after T0, with one result per (label, tag_status)."""
    with db.write() as session:
        row = session.query(Study).filter_by(study_uid=study).one_or_none()
        if row is None:
            row = Study(study_uid=study, accession_number=f"A{study[-1]}")
        series = Series(
            series_uid=uid,
            study=row,
            modality="CT",
            state=state,
            version=max(1, len(results)),
            instance_count=3,
            first_received_at=T0,
            last_received_at=T0 + timedelta(hours=hours),
            skip_reason="localizer" if state == SeriesState.SKIPPED else None,
        )
        session.add(series)
        session.flush()
        for version, (label, tag_status) in enumerate(results, start=1):
            session.add(
                Result(
                    series_id=series.id,
                    series_version=version,
                    model_name="m",
                    model_version="1.0",
                    probability=0.9 if label == "contrast" else 0.1,
                    label=label,
                    threshold=0.5,
                    aggregation="mean",
                    slices_used=3,
                    tag_status=tag_status,
                )
            )


@pytest.fixture
def store(db: Database) -> Database:
    add_series(db, "1.2.3.1", "1.2.3", SeriesState.CLASSIFIED, 1, [("contrast", "missing")])
    # Re-opened: its newest result says no contrast, and the tag disagrees.
    add_series(
        db,
        "1.2.3.2",
        "1.2.3",
        SeriesState.CLASSIFIED,
        3,
        [("contrast", "missing"), ("no_contrast", "disagrees")],
    )
    add_series(db, "1.2.4.1", "1.2.4", SeriesState.SKIPPED, 2)
    add_series(db, "1.2.4.2", "1.2.4", SeriesState.RECEIVING, 4)
    return db


def cli(store: Database, capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    assert main(["--database-url", store.url, "series", "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def api(store: Database, query: str) -> list[str]:
    settings = load_settings(env={}, overrides={"database_url": store.url})
    with TestClient(create_app(settings, store)) as client:
        response = client.get(f"/api/series?{query}")
    assert response.status_code == 200, response.text
    return [item["series_uid"] for item in response.json()["items"]]


@pytest.mark.parametrize(
    ("args", "query"),
    [
        ([], ""),
        (["--state", "classified"], "state=classified"),
        (["--state", "skipped", "--state", "receiving"], "state=skipped&state=receiving"),
        (["--study", "1.2.4"], "study_uid=1.2.4"),
        (["--accession", "A3"], "accession=A3"),
        (["--label", "contrast"], "label=contrast"),
        (["--label", "review"], "label=review"),
        (["--tag-status", "disagrees"], "tag_status=disagrees"),
        (["--limit", "2"], "limit=2"),
    ],
)
def test_the_command_and_the_api_list_the_same_series(
    store: Database, capsys: pytest.CaptureFixture[str], args: list[str], query: str
) -> None:
    assert [r["series_uid"] for r in cli(store, capsys, *args)] == api(store, query)


def test_rows_carry_the_newest_result_and_the_reason(
    store: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = {r["series_uid"]: r for r in cli(store, capsys)}
    assert list(rows) == ["1.2.4.2", "1.2.3.2", "1.2.4.1", "1.2.3.1"]  # newest arrival first
    reopened = rows["1.2.3.2"]
    assert (reopened["label"], reopened["tag_status"], reopened["result_version"]) == (
        "no_contrast",
        "disagrees",
        2,
    )
    assert reopened["study_uid"] == "1.2.3" and reopened["accession"] == "A3"
    assert rows["1.2.4.1"]["reason"] == "localizer" and rows["1.2.4.1"]["label"] is None
    assert main(["--database-url", store.url, "series"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:7] == [
        "SERIES_UID",
        "MODALITY",
        "DESCRIPTION",
        "INSTANCES",
        "STATE",
        "VERSION",
        "LABEL",
    ]
    assert len(table) == 5


def test_an_unknown_state_is_an_error_as_in_the_api(
    store: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--database-url", store.url, "series", "--state", "clasified"]) == 2
    assert "--state clasified: expected one of" in capsys.readouterr().err
    assert main(["--database-url", store.url, "series", "--limit", "-1"]) == 2


def test_a_series_in_review_shows_review_and_why(
    store: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    add_series(store, "1.2.5.1", "1.2.5", SeriesState.CLASSIFIED, 5, [("review", "missing")])
    with store.write() as session:
        result = session.query(Result).join(Series).filter(Series.series_uid == "1.2.5.1").one()
        result.network_label = "contrast"
        result.physics_hu = 38.6
        result.review_reasons = ["the network says contrast, but the blood pool reads 39 HU"]
    [row] = cli(store, capsys, "--label", "review")
    assert (row["series_uid"], row["label"], row["network_label"]) == (
        "1.2.5.1",
        "review",
        "contrast",
    )
    assert (row["blood_hu"], row["why"]) == (39, "blood pool disagrees")
    assert main(["--database-url", store.url, "series"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "1.2.5.1" in table[1] and " review " in table[1]  # the newest arrival, in review
