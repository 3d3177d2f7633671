"""What the web app gives away over a real socket (issue 14): public /health says only
ok/warn/fail per check, guessing the token is rate limited, and the accession number is
hidden like patient names."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path

import pytest

from ivcontrast.store.db import Database
from ivcontrast.web import WebServer
from tests.support.web_store import Filled, fill_store, model_package, web_settings

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def fetch(
    url: str, headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Database, Filled]]:
    data = tmp_path_factory.mktemp("exposure")
    db = Database(web_settings(data).db_url)
    db.upgrade()
    filled = fill_store(db, web_settings(data).spool_path, slices=3, size=32)
    yield data, db, filled
    db.dispose()


@contextmanager
def serving(store: tuple[Path, Database, Filled], **overrides: object) -> Iterator[str]:
    data, db, _ = store
    settings = web_settings(data, **{"web.port": 0, **overrides})
    server = WebServer(settings, db)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


def test_public_health_says_only_the_status_of_each_check(
    store: tuple[Path, Database, Filled],
) -> None:
    data = store[0]
    model = model_package(data / "model")
    with serving(store, **{"web.token": TOKEN, "classifier.model": str(model)}) as url:
        status, _, body = fetch(f"{url}/health")
        detailed_status, _, detailed = fetch(f"{url}/health", AUTH)
    assert status == detailed_status  # a probe still sees 200 or 503
    public = json.loads(body)
    assert set(public) == {"status", "checked_at", "checks"}
    assert set(public["checks"]) == {"database", "spool", "workers", "model"}
    assert all(set(c) == {"status"} for c in public["checks"].values())
    text = body.decode()
    for secret in (str(data), "free_mb", "total_mb", str(model), "loaded_by", "version"):
        assert secret not in text, secret
    # With the token: everything, as before.
    full = json.loads(detailed)
    assert full["checks"]["spool"]["data"]["path"].startswith(str(data))
    assert full["checks"]["model"]["data"]["path"] == str(model)
    assert "version" in full


def test_without_a_token_configured_health_keeps_its_details(
    store: tuple[Path, Database, Filled],
) -> None:
    with serving(store) as url:
        _, _, body = fetch(f"{url}/health")
    assert "data" in json.loads(body)["checks"]["spool"]


def test_guessing_the_token_is_rate_limited(store: tuple[Path, Database, Filled]) -> None:
    with serving(store, **{"web.token": TOKEN, "web.login_failures_per_minute": 5}) as url:
        form = urllib.parse.urlencode({"token": "guess", "next": "/"}).encode()
        assert [fetch(f"{url}/login", data=form)[0] for _ in range(3)] == [401] * 3
        wrong = {"Authorization": "Bearer guess"}
        assert [fetch(f"{url}/api/series", wrong)[0] for _ in range(2)] == [401] * 2
        # Five failures in the minute: every further try waits, the right token too.
        status, headers, _ = fetch(f"{url}/login", data=form)
        assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60
        right = urllib.parse.urlencode({"token": TOKEN, "next": "/"}).encode()
        assert fetch(f"{url}/login", data=right)[0] == 429
        assert fetch(f"{url}/api/series", AUTH)[0] == 429
        # Requests without a guess are answered as before.
        assert fetch(f"{url}/api/series")[0] == 401
        assert fetch(f"{url}/health")[0] in (200, 503)


def test_a_right_token_is_not_slowed_by_the_limit(store: tuple[Path, Database, Filled]) -> None:
    with serving(store, **{"web.token": TOKEN, "web.login_failures_per_minute": 2}) as url:
        assert all(fetch(f"{url}/api/series", AUTH)[0] == 200 for _ in range(10))


@pytest.mark.parametrize("show", [False, True])
def test_accession_number_is_shown_only_with_patient_names(
    store: tuple[Path, Database, Filled], show: bool
) -> None:
    filled = store[2]
    with serving(store, **{"web.show_patient_names": show}) as url:
        bodies = {
            path: fetch(url + path, {"Accept": "text/html"})[2].decode()
            for path in (
                "/",
                "/series",
                f"/series/{filled.contrast}",
                "/api/series",
                f"/api/series/{filled.contrast}",
                "/api/results",
                "/api/results/export?format=csv",
                "/api/results/export?format=json",
            )
        }
    for path, body in bodies.items():
        assert (filled.accession in body) is show, path
    # The exports leave the column out, as they do patient names.
    assert ("accession_number" in bodies["/api/results/export?format=csv"]) is show
