"""The dashboard in a real browser: Debian's headless Chromium against a live server.

The series page must show the slice-probability curve and thumbnails that really decoded
(app.js records each image's naturalWidth on the body once the page has loaded). The
screenshots are kept as test artifacts under $IVCONTRAST_TEST_ARTIFACTS (default
``artifacts/`` in the repository) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ivcontrast.store.db import Database
from ivcontrast.web import WebServer
from tests.support.review_store import Review, add_review_series
from tests.support.web_store import (
    PATIENT_ID,
    PATIENT_NAME,
    Filled,
    fill_store,
    model_package,
    web_settings,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPO = Path(__file__).resolve().parents[2]
WIDTH = 1400

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
    pytest.mark.slow,
]


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("IVCONTRAST_TEST_ARTIFACTS") or REPO / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Live:
    url: str
    filled: Filled
    review: Review
    profile_root: Path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data = tmp_path_factory.mktemp("dashboard")
    settings = web_settings(
        data, **{"web.port": 0, "classifier.model": str(model_package(data / "model"))}
    )
    db = Database(settings.db_url)
    db.upgrade()
    filled = fill_store(db, settings.spool_path, slices=40, size=256)
    review = add_review_series(db, settings.spool_path, size=256)
    server = WebServer(settings, db)
    url = server.start()
    yield Live(url, filled, review, tmp_path_factory.mktemp("chromium"))
    server.stop()
    db.dispose()


def chromium(live: Live, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run with a fresh profile and no network beyond our server."""
    profile = live.profile_root / f"profile-{len(list(live.profile_root.iterdir()))}"
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def dump_dom(live: Live, path: str) -> str:
    run = chromium(live, "--dump-dom", live.url + path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "<body" in run.stdout, run.stderr[-2000:]
    return run.stdout


def screenshot(live: Live, path: str, name: str, height: int) -> np.ndarray:
    target = artifacts_dir() / name
    target.unlink(missing_ok=True)
    run = chromium(
        live, f"--screenshot={target}", f"--window-size={WIDTH},{height}", live.url + path
    )
    assert run.returncode == 0 and target.exists(), run.stderr[-2000:]
    return np.asarray(Image.open(target).convert("RGB"))


class Elements(HTMLParser):
    """Collects the attributes of every start tag, by tag name."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, list[dict[str, str]]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.setdefault(tag, []).append({k: v or "" for k, v in attrs})


def elements(html: str) -> dict[str, list[dict[str, str]]]:
    parser = Elements()
    parser.feed(html)
    return parser.tags


def test_series_page_shows_the_curve_and_the_thumbnails(live: Live) -> None:
    dom = elements(dump_dom(live, f"/series/{live.filled.contrast}"))
    body = dom["body"][0]
    assert body.get("data-ready") == "1", "app.js did not run to the load event"
    # The curve: one path with a point per slice, drawn in the DOM after the script ran.
    lines = [p for p in dom["path"] if p.get("class") == "curve-line"]
    assert len(lines) == 1 and lines[0]["d"].count("L") == live.filled.slices - 1
    assert body["data-curve-points"] == str(live.filled.slices)
    assert len([g for g in dom["g"] if g.get("class") == "marker"]) == 8
    # The thumbnails: all eight decoded in the browser.
    thumbs = [i for i in dom["img"] if "data-thumb" in i]
    assert len(thumbs) == 8
    assert body["data-thumbs-total"] == "8" and body["data-thumbs-loaded"] == "8"
    assert body["data-thumbs-failed"] == "0"
    widths = [int(w) for w in body["data-thumbs-widths"].split(",")]
    assert widths == [192] * 8  # 256-pixel slices, shown at the default 192


def test_series_page_screenshot(live: Live) -> None:
    shot = screenshot(live, f"/series/{live.filled.contrast}", "dashboard-series.png", 2000)
    assert shot.shape == (2000, WIDTH, 3)
    # The curve's blue (#1d4ed8) is on screen, and so are the thumbnails' black backgrounds.
    blue = np.all(np.abs(shot.astype(int) - [0x1D, 0x4E, 0xD8]) < 24, axis=2)
    assert blue.sum() > 2000
    black = np.all(shot < 8, axis=2)
    assert black.sum() > 8 * 80 * 80


def test_overview_in_the_browser(live: Live) -> None:
    html = dump_dom(live, "/")
    assert PATIENT_NAME not in html and PATIENT_ID not in html
    assert "Tag disagreements" in html and "Failures" in html
    assert live.filled.contrast in html  # a disagreement, linked
    assert "association rejected" in html  # a failed write-back job, with its error
    shot = screenshot(live, "/", "dashboard-overview.png", 1500)
    assert shot.std() > 10  # not a blank page


def test_unavailable_images_are_marked_not_broken(live: Live) -> None:
    # The localizer's file is indexed but missing from the spool.
    html = dump_dom(live, f"/series/{live.filled.skipped}")
    body = elements(html)["body"][0]
    assert body["data-thumbs-total"] == "1" and body["data-thumbs-failed"] == "1"
    assert "(image unavailable)" in html
    assert "localizer/scout" in html
    screenshot(live, "/series", "dashboard-series-list.png", 1100)


def test_a_series_in_review_shows_why_and_the_blood_pool_circled(live: Live) -> None:
    html = dump_dom(live, f"/series/{live.review.review}")
    assert "In review: a person decides." in html and live.review.reasons[0] in html
    assert "Physics second opinion" in html and "41 HU" in html
    pictures = [i for i in elements(html)["img"] if "physics.png" in i.get("src", "")]
    assert len(pictures) == 1
    shot = screenshot(live, f"/series/{live.review.review}", "dashboard-review.png", 1400)
    # The circle (amber, 255/190/0) drawn around the blood pool, shown in the browser.
    amber = np.all(np.abs(shot.astype(int) - [255, 190, 0]) < 40, axis=2)
    assert amber.sum() > 30
    overview = dump_dom(live, "/")
    assert 'href="/series?label=review"' in overview
