"""Log output: peer bytes escaped, warnings through logging, connection failures in a line."""

from __future__ import annotations

import json
import logging
import ssl
import warnings

import pytest

from ivcontrast.config import load_settings
from ivcontrast.logs import configure_logging, connection_failure, escape


@pytest.mark.parametrize(
    ("raw", "written"),
    [
        ("PACS", "PACS"),
        ("EV\x1b[2JIL", "EV\\x1b[2JIL"),
        ("a\nforged line", "a\\nforged line"),
        ("nul\x00del\x7f c1\x85", "nul\\x00del\\x7f c1\\x85"),
        ("bidi\u202eflip", "bidi\\u202eflip"),
        ("Müller ok", "Müller ok"),
    ],
)
def test_escape(raw: str, written: str) -> None:
    assert escape(raw) == written


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_messages_are_escaped_and_warnings_logged(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(load_settings(env={}, overrides={"log_format": log_format}))
    try:
        logging.getLogger("ivcontrast.test").warning("calling AE %s", "EV\x1b[2J\nIL")
        warnings.warn("odd value '1.2\x1b[31m'", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
    err = capsys.readouterr().err
    assert "\x1b" not in err and "UserWarning" in err
    lines = err.strip().splitlines()
    assert len(lines) == 2  # the newline did not start a forged line
    if log_format == "json":
        assert json.loads(lines[0])["message"] == "calling AE EV\\x1b[2J\\nIL"
        assert json.loads(lines[1])["logger"] == "py.warnings"
    else:
        assert lines[0].endswith("ivcontrast.test: calling AE EV\\x1b[2J\\nIL")
        assert " py.warnings: " in lines[1]


def test_connection_failure_is_one_short_line() -> None:
    exc = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:2580)")
    assert "\n" not in connection_failure(exc)
    assert connection_failure(ConnectionResetError(104, "Connection reset by peer")) == (
        "ConnectionResetError: [Errno 104] Connection reset by peer"
    )
