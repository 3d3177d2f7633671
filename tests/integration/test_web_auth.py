"""The bearer token: 401 without it, 200 with it; browsers sign in once for a cookie."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ivcontrast.store.db import Database
from ivcontrast.web import create_app
from ivcontrast.web.auth import COOKIE
from tests.support.web_store import Filled, fill_store, web_settings

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Database, Filled]]:
    data = tmp_path_factory.mktemp("auth")
    settings = web_settings(data)
    db = Database(settings.db_url)
    db.upgrade()
    filled = fill_store(db, settings.spool_path, slices=4, size=32)
    yield data, db, filled
    db.dispose()


def client(store: tuple[Path, Database, Filled], **overrides: object) -> TestClient:
    data, db, _ = store
    # These tests try wrong tokens on purpose, more than the guessing limit lets through
    # (test_web_exposure tests the limit).
    limit = {"web.login_failures_per_minute": 1000}
    settings = web_settings(data, **{"web.token": TOKEN, **limit, **overrides})
    return TestClient(create_app(settings, db), follow_redirects=False)


def protected(filled: Filled) -> list[str]:
    return [
        "/api/series",
        f"/api/series/{filled.contrast}",
        "/api/results",
        "/api/results/export?format=csv",
        "/api/jobs",
        "/api/associations",
        "/api/events",
        "/api/summary",
        "/api/workers",
        f"/series/{filled.contrast}/thumbnails/0.png",
        "/metrics",
        "/openapi.json",
        "/api/nonexistent",
    ]


def test_every_route_needs_the_token(store: tuple[Path, Database, Filled]) -> None:
    c = client(store)
    for url in protected(store[2]):
        response = c.get(url)
        assert response.status_code == 401, url
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert c.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401, url
        assert c.get(url, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401, url
        assert c.get(url, headers=AUTH).status_code in (200, 404), url
    assert c.get("/api/series", headers=AUTH).json()["total"] == 8


def test_health_is_public_unless_configured(store: tuple[Path, Database, Filled]) -> None:
    # No model package here, so the report is 503; what matters is that it is not 401.
    assert client(store).get("/health").status_code in (200, 503)
    closed = client(store, **{"web.public_health": False})
    assert closed.get("/health").status_code == 401
    assert closed.get("/health", headers=AUTH).status_code in (200, 503)


def test_static_assets_are_public(store: tuple[Path, Database, Filled]) -> None:
    c = client(store)
    assert c.get("/static/style.css").status_code == 200
    assert c.get("/static/app.js").status_code == 200


def test_browser_signs_in_once_and_gets_a_cookie(store: tuple[Path, Database, Filled]) -> None:
    c = client(store)
    filled = store[2]
    page = f"/series/{filled.contrast}"
    redirect = c.get(page, headers={"Accept": "text/html"})
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/login?next=" + page.replace("/", "%2F")
    assert c.get("/login").status_code == 200

    wrong = c.post("/login", data={"token": "guess", "next": page})
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies
    right = c.post("/login", data={"token": TOKEN, "next": page})
    assert right.status_code == 303 and right.headers["location"] == page
    cookie = right.cookies[COOKIE]
    assert TOKEN not in cookie
    assert "httponly" in right.headers["set-cookie"].lower()
    assert "samesite=strict" in right.headers["set-cookie"].lower()

    c.cookies.set(COOKIE, cookie)
    assert c.get(page).status_code == 200
    assert c.get(f"/series/{filled.contrast}/thumbnails/0.png").status_code == 200
    c.cookies.set(COOKIE, cookie[:-1] + ("0" if cookie[-1] != "0" else "1"))
    assert c.get("/api/series").status_code == 401

    out = c.get("/logout")
    assert out.status_code == 303 and 'ivcontrast_session=""' in out.headers["set-cookie"]


def test_sign_in_refuses_a_huge_form(store: tuple[Path, Database, Filled]) -> None:
    response = client(store).post("/login", content=b"token=" + b"x" * 100_000)
    assert response.status_code == 413


def test_sign_in_never_redirects_off_site(store: tuple[Path, Database, Filled]) -> None:
    response = client(store).post("/login", data={"token": TOKEN, "next": "//evil.example/x"})
    assert response.headers["location"] == "/"


def test_schema_declares_the_bearer_scheme(store: tuple[Path, Database, Filled]) -> None:
    schema = client(store).get("/openapi.json", headers=AUTH).json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["security"] == [{"bearer": []}]
    assert schema["paths"]["/health"]["get"]["security"] == []


def test_without_a_token_everything_is_open(store: tuple[Path, Database, Filled]) -> None:
    data, db, _ = store
    c = TestClient(create_app(web_settings(data), db), follow_redirects=False)
    assert c.get("/api/series").status_code == 200
    assert c.get("/login").status_code == 303
