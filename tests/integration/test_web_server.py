"""Serving: WebServer on a thread (as ``ivcontrast serve`` uses it) and ``ivcontrast web``."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ivcontrast.cli import main
from ivcontrast.store.db import Database
from ivcontrast.web import WebServer
from tests.support.web_store import fill_store, web_settings


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_web_server_starts_on_a_free_port_serves_and_stops(tmp_path: Path) -> None:
    settings = web_settings(tmp_path, **{"web.port": 0})
    db = Database(settings.db_url)
    db.upgrade()
    filled = fill_store(db, settings.spool_path, slices=3, size=32)
    server = WebServer(settings, db)
    url = server.start()
    try:
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        status, body = fetch(f"{url}/api/series?limit=1")
        assert status == 200 and json.loads(body)["total"] == len(filled.all)
        status, _ = fetch(f"{url}/series/{filled.contrast}/thumbnails/0.png")
        assert status == 200
        with pytest.raises(RuntimeError, match="already started"):
            server.start()
        # The port is taken while it runs.
        with pytest.raises(OSError):
            WebServer(settings, db, port=int(url.rsplit(":", 1)[1])).start()
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/health", timeout=5)
    server.stop()  # twice is fine
    db.dispose()


def test_ivcontrast_web_as_a_process(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ivcontrast", "--data-dir", str(tmp_path), "web", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ivcontrast web: serving http://127.0.0.1:"), line
        url = line.split("serving ", 1)[1].strip().rstrip("/")
        status, body = fetch(f"{url}/api/series")
        assert status == 200 and json.loads(body)["total"] == 0  # its own, migrated store
        status, body = fetch(f"{url}/health")
        report = json.loads(body)
        assert status == 503 and report["checks"]["workers"]["status"] == "fail"
        assert report["checks"]["database"]["status"] == "ok"
        status, page = fetch(f"{url}/")
        assert status == 200 and b"Overview" in page
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_ivcontrast_web_says_when_the_port_is_taken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code = main(["--data-dir", str(tmp_path), "web", "--port", str(port)])
    assert code == 1
    assert f"127.0.0.1:{port}: cannot listen" in capsys.readouterr().err


def test_ivcontrast_web_rejects_a_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["web", "--port", "70000"]) == 2
    assert "web.port" in capsys.readouterr().err


def test_a_failed_start_leaves_the_callers_signal_handlers(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        main(["--data-dir", str(tmp_path), "web", "--port", str(busy.getsockname()[1])])
    assert signal.getsignal(signal.SIGTERM) is before
