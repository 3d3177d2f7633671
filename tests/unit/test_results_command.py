"""``ivcontrast results``: filters, versions, formats and errors over a store of result rows."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from ivcontrast.cli import main
from ivcontrast.store.db import Database
from ivcontrast.store.models import Result, Series, SeriesState, Study
from ivcontrast.store.read import ResultQuery, find_results

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def add_series(
    db: Database,
    uid: str,
    *,
    study: str,
    accession: str | None,
    results: list[dict[str, object]],
) -> None:
    """A series with one result per entry (versions 1, 2, ...)."""
    with db.write() as session:
        row = session.query(Study).filter_by(study_uid=study).one_or_none()
        if row is None:
            row = Study(study_uid=study, accession_number=accession, patient_name="Doe^Jane")
        series = Series(
            series_uid=uid,
            study=row,
            modality="CT",
            series_description="Chest",
            state=SeriesState.CLASSIFIED,
            version=len(results),
        )
        session.add(series)
        session.flush()
        for version, fields in enumerate(results, start=1):
            values: dict[str, object] = {
                "model_name": "m",
                "model_version": "1.0",
                "model_sha256": "ab" * 32,
                "probability": 0.9,
                "label": "contrast",
                "threshold": 0.5,
                "aggregation": "mean",
                "slices_used": 3,
                "slice_probabilities": [[-10.0, 0.8], [0.0, 0.9], [10.0, 1.0]],
                "original_contrast_agent": None,
                "tag_status": "missing",
                "device": "onnxruntime-cpu",
                "total_seconds": 0.7,
            }
            values.update(fields)
            session.add(Result(series_id=series.id, series_version=version, **values))


@pytest.fixture
def store(db: Database) -> Database:
    add_series(
        db,
        "1.2.3.1",
        study="1.2.3",
        accession="ACC1",
        results=[
            {"created_at": T0, "label": "no_contrast", "probability": 0.2},
            {"created_at": T0 + timedelta(hours=5), "probability": 0.95},  # re-opened
        ],
    )
    add_series(
        db,
        "1.2.3.2",
        study="1.2.3",
        accession="ACC1",
        results=[
            {
                "created_at": T0 + timedelta(hours=1),
                "original_contrast_agent": "N",
                "tag_status": "disagrees",
            }
        ],
    )
    add_series(
        db,
        "1.2.4.1",
        study="1.2.4",
        accession="ACC2",
        results=[
            {
                "created_at": T0 + timedelta(days=1),
                "label": "no_contrast",
                "probability": 0.05,
                "original_contrast_agent": "NONE",
                "tag_status": "agrees",
            }
        ],
    )
    return db


def results(store: Database, capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    assert main(["--database-url", store.url, "results", "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def keys(rows: list[dict]) -> list[tuple[str, int]]:
    return [(r["series_uid"], r["version"]) for r in rows]


def test_newest_version_of_each_series_newest_first(
    store: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = results(store, capsys)
    assert keys(rows) == [("1.2.4.1", 1), ("1.2.3.1", 2), ("1.2.3.2", 1)]
    first = rows[1]
    assert first["label"] == "contrast" and first["probability"] == pytest.approx(0.95)
    assert first["model"] == "m 1.0" and first["slice_probabilities"][2] == [10.0, 1.0]
    assert first["accession"] == "ACC1" and first["study_uid"] == "1.2.3"
    assert first["created"] == (T0 + timedelta(hours=5)).isoformat()  # UTC, with its offset
    assert "patient" not in json.dumps(rows).lower()  # no patient data in the export
    all_versions = results(store, capsys, "--all-versions")
    assert keys(all_versions) == [("1.2.4.1", 1), ("1.2.3.1", 2), ("1.2.3.2", 1), ("1.2.3.1", 1)]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--label", "no_contrast"], [("1.2.4.1", 1)]),
        (["--label", "no_contrast", "--all-versions"], [("1.2.4.1", 1), ("1.2.3.1", 1)]),
        (["--disagree"], [("1.2.3.2", 1)]),
        (["--tag-status", "agrees"], [("1.2.4.1", 1)]),
        (["--tag-status", "missing"], [("1.2.3.1", 2)]),
        (["--study", "1.2.3"], [("1.2.3.1", 2), ("1.2.3.2", 1)]),
        (["--series", "1.2.3.2"], [("1.2.3.2", 1)]),
        (["--accession", "ACC2"], [("1.2.4.1", 1)]),
        (["--since", "2024-05-02"], [("1.2.4.1", 1)]),
        (["--until", "2024-05-01T09:00:00"], []),  # the newest version is later
        (["--until", "2024-05-01T09:00:00", "--all-versions"], [("1.2.3.1", 1)]),
        (["--since", "2024-05-01T09:00", "--until", "2024-05-01T13:00"], [("1.2.3.2", 1)]),
        (
            ["--since", "2024-05-01T10:00+01:00", "--until", "2024-05-01T09:00:01Z"],
            [("1.2.3.2", 1)],
        ),
        (["--limit", "2"], [("1.2.4.1", 1), ("1.2.3.1", 2)]),
        (["--limit", "0"], [("1.2.4.1", 1), ("1.2.3.1", 2), ("1.2.3.2", 1)]),
        (["--label", "contrast", "--study", "1.2.4"], []),
    ],
)
def test_filters(
    store: Database, capsys: pytest.CaptureFixture[str], args: list[str], expected: list
) -> None:
    assert keys(results(store, capsys, *args)) == expected


def test_the_query_helper_matches_the_command(store: Database) -> None:
    with store.session() as session:
        rows = list(find_results(session, ResultQuery(tag_status="disagrees")))
    assert [(r.series.series_uid, r.study.accession_number) for r in rows] == [("1.2.3.2", "ACC1")]


def test_table_and_csv(store: Database, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--database-url", store.url, "results"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["CREATED", "ACCESSION", "SERIES_DESCRIPTION", "SERIES_UID"]
    assert len(table) == 4 and "1.2.3.2" in table[3] and "disagrees" in table[3]
    assert "ACC1" in table[3]  # a study is found by its accession number
    assert main(["--database-url", store.url, "results", "--format", "csv", "--disagree"]) == 0
    [row] = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert (row["series_uid"], row["tag"], row["tag_status"]) == ("1.2.3.2", "N", "disagrees")
    assert row["probability"] == "0.900" and row["device"] == "onnxruntime-cpu"
    assert "slice_probabilities" not in row


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since 'yesterday': expected an ISO 8601"),
        (["--until", "0.5"], "--until '0.5': expected an ISO 8601"),
        (["--limit", "-1"], "--limit -1"),
        (["--disagree", "--tag-status", "agrees"], "exclude each other"),
    ],
)
def test_bad_arguments(
    store: Database, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["--database-url", store.url, "results", *args]) == 2
    assert message in capsys.readouterr().err


def test_as_a_subprocess(store: Database) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ivcontrast",
            "--database-url",
            store.url,
            "results",
            "--format",
            "json",
            "--label",
            "contrast",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert keys(json.loads(out.stdout)) == [("1.2.3.1", 2), ("1.2.3.2", 1)]


REVIEW_REASON = (
    "the network says contrast, but the blood pool (chest vessel (aorta or heart)) reads 41 HU, "
    "below 125 HU"
)
PHYSICS = {
    "found": True,
    "contrast": False,
    "structure": "chest vessel (aorta or heart)",
    "hu": 41.5,
    "slice_index": 9,
    "z_mm": -665.77,
    "row": 123.2,
    "col": 80.9,
    "radius_mm": 21.6,
    "threshold_hu": 125.0,
    "reason": "median of 5 sampled slices, 20 mm along z",
}


@pytest.fixture
def with_review(store: Database) -> Database:
    """The store and one series in review: the network says contrast, the blood pool 41 HU."""
    add_series(
        store,
        "1.2.5.1",
        study="1.2.5",
        accession="ACC3",
        results=[
            {
                "created_at": T0 + timedelta(days=2),
                "label": "review",
                "network_label": "contrast",
                "review_reasons": [REVIEW_REASON, "probability 0.510 is within 0.05 of 0.500"],
                "physics_label": "no_contrast",
                "physics_hu": 41.5,
                "physics_structure": PHYSICS["structure"],
                "physics": PHYSICS,
                "physics_seconds": 0.2,
            }
        ],
    )
    add_series(  # a confident call whose physics opinion found no blood pool
        store,
        "1.2.5.2",
        study="1.2.5",
        accession="ACC3",
        results=[
            {
                "created_at": T0 + timedelta(days=2, hours=1),
                "network_label": "contrast",
                "review_reasons": [],
                "physics": {**PHYSICS, "found": False, "hu": None, "structure": None},
            }
        ],
    )
    return store


def test_review_is_a_label_to_filter_on_with_the_physics_opinion(
    with_review: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    [row] = results(with_review, capsys, "--label", "review")
    assert (row["series_uid"], row["label"], row["network_label"]) == (
        "1.2.5.1",
        "review",
        "contrast",
    )
    assert row["blood_hu"] == 42 and row["blood_pool"] == "chest vessel"
    assert row["why"] == "blood pool disagrees, near threshold"
    assert row["review_reasons"][0] == REVIEW_REASON  # whole in JSON
    assert (row["physics_label"], row["physics_hu"]) == ("no_contrast", 41.5)
    assert row["physics_structure"] == "chest vessel (aorta or heart)"
    assert row["physics"]["row"] == 123.2 and row["physics"]["slice_index"] == 9
    assert [r["series_uid"] for r in results(with_review, capsys, "--label", "contrast")] == [
        "1.2.5.2",
        "1.2.3.1",
        "1.2.3.2",
    ]
    not_found = results(with_review, capsys, "--series", "1.2.5.2")[0]
    assert (not_found["blood_pool"], not_found["blood_hu"], not_found["why"]) == (
        "not found",
        None,
        None,
    )


def test_the_table_stays_short_and_csv_has_the_reasons(
    with_review: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--database-url", with_review.url, "results", "--label", "review"]) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.split()[5:10] == ["LABEL", "PROBABILITY", "BLOOD_HU", "BLOOD_POOL", "WHY"]
    assert "review" in line and " 42 " in line and "chest vessel " in line
    assert "blood pool disagrees, near threshold" in line
    assert "125 HU" not in line and len(line) < 250  # the reasons in full are CSV's and JSON's
    assert main(["--database-url", with_review.url, "results", "--format", "csv"]) == 0
    rows = {r["series_uid"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    review = rows["1.2.5.1"]
    assert review["review_reasons"] == f"{REVIEW_REASON}; probability 0.510 is within 0.05 of 0.500"
    assert review["physics_hu"] == "41.500" and review["network_label"] == "contrast"
    assert "physics" not in review  # the whole opinion is JSON's
    assert rows["1.2.3.1"]["review_reasons"] == "" and rows["1.2.3.1"]["blood_hu"] == ""


def test_the_read_model_counts_and_finds_review(with_review: Database) -> None:
    from ivcontrast.store import read

    with with_review.session() as session:
        rows = list(find_results(session, ResultQuery(label="review")))
        counts = read.summary(session)
        _, series = read.series_page(session, read.SeriesFilter(label="review"), None)
    assert [r.series.series_uid for r in rows] == ["1.2.5.1"]
    assert rows[0].result.physics == PHYSICS
    assert counts.results_by_label == {"contrast": 3, "no_contrast": 1, "review": 1}
    assert [s.series.series_uid for s in series] == ["1.2.5.1"]
