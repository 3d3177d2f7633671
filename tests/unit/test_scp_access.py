"""Who may open an association: called AE title and the calling-AE allow-list."""

from __future__ import annotations

import pytest

from ivcontrast.config import ScpSettings
from ivcontrast.scp.access import (
    REASON_CALLED_AE_NOT_RECOGNIZED,
    REASON_CALLING_AE_NOT_RECOGNIZED,
    AccessPolicy,
    AllowEntry,
    normalize_address,
    parse_allow_list,
    resolve_host,
)


def fake_resolve(host: str) -> frozenset[str]:
    return {"pacs.example": frozenset({"10.0.0.5", "fd00::5"})}.get(host, frozenset({host}))


def test_parse_allow_list() -> None:
    entries = parse_allow_list(["CT1", " PACS@pacs.example ", "X@Y@10.0.0.9"], fake_resolve)
    assert entries == [
        AllowEntry("CT1"),
        AllowEntry("PACS", "pacs.example", frozenset({"10.0.0.5", "fd00::5"})),
        AllowEntry("X@Y", "10.0.0.9", frozenset({"10.0.0.9"})),
    ]


@pytest.mark.parametrize("bad", ["", "@host", "AE@", "A" * 17])
def test_parse_allow_list_rejects_bad_entries(bad: str) -> None:
    with pytest.raises(ValueError, match="expected 'AE' or 'AE@host'"):
        parse_allow_list([bad], fake_resolve)


def test_resolve_host() -> None:
    assert resolve_host("127.0.0.1") == frozenset({"127.0.0.1"})
    assert "127.0.0.1" in resolve_host("localhost")
    assert resolve_host("no-such-host.invalid") == frozenset()


def test_normalize_address() -> None:
    assert normalize_address("::ffff:10.0.0.5") == "10.0.0.5"
    assert normalize_address("FD00:0::5") == "fd00::5"
    assert normalize_address("10.0.0.5") == "10.0.0.5"


def policy(*allowed: str, require_called: bool = True) -> AccessPolicy:
    return AccessPolicy("IVCONTRAST", require_called, parse_allow_list(allowed, fake_resolve))


def test_called_ae_must_be_ours() -> None:
    rejection = policy().check("ANY", "OTHER", "10.0.0.1")
    assert rejection is not None
    assert (rejection.result, rejection.source, rejection.reason_code) == (
        0x01,
        0x01,
        REASON_CALLED_AE_NOT_RECOGNIZED,
    )
    assert "'OTHER'" in rejection.reason
    assert policy().check("ANY", "IVCONTRAST  ", "10.0.0.1") is None  # AE padding ignored
    assert policy(require_called=False).check("ANY", "OTHER", "10.0.0.1") is None


def test_empty_allow_list_accepts_any_calling_ae() -> None:
    assert policy().check("WHOEVER", "IVCONTRAST", "192.0.2.1") is None


def test_allow_list_by_title_and_host() -> None:
    p = policy("CT1", "PACS@pacs.example")
    assert p.check("CT1", "IVCONTRAST", "192.0.2.1") is None
    assert p.check("PACS", "IVCONTRAST", "10.0.0.5") is None
    assert p.check("PACS", "IVCONTRAST", "::ffff:10.0.0.5") is None
    from_elsewhere = p.check("PACS", "IVCONTRAST", "10.0.0.6")
    assert from_elsewhere is not None
    assert from_elsewhere.reason_code == REASON_CALLING_AE_NOT_RECOGNIZED
    assert "not allowed from 10.0.0.6" in from_elsewhere.reason
    unknown = p.check("MR1", "IVCONTRAST", "10.0.0.5")
    assert unknown is not None and "not in the allow-list" in unknown.reason
    assert p.check("ct1", "IVCONTRAST", "10.0.0.5") is not None  # AE titles are case-sensitive


def test_from_settings() -> None:
    scp = ScpSettings(ae_title="NODE", allowed_calling_aes=["CT1@127.0.0.1"])
    p = AccessPolicy.from_settings(scp)
    assert p.check("CT1", "NODE", "127.0.0.1") is None
    assert p.check("CT1", "NODE", "127.0.0.2") is not None
