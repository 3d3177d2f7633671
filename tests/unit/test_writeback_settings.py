"""Write-back settings: off by default, a TOML-friendly destination list, and validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ivcontrast.classifier.tags import tag_says_contrast
from ivcontrast.config import (
    DicomDestination,
    FolderDestination,
    SettingsError,
    WritebackSettings,
    load_settings,
)

EXAMPLE = """
[writeback]
enabled = true
trigger = "confident_disagreements"
min_confidence = 0.95
contrast_ingredient = "iodine"

[[writeback.destinations]]
kind = "dicom"
name = "pacs"
ae_title = "ORTHANC"
host = "pacs.example.org"
port = 4242
tls = true
tls_ca = "/etc/ivcontrast/ca.pem"

[[writeback.destinations]]
kind = "folder"
name = "archive"
path = "/srv/ivcontrast/corrected"
"""


def test_off_by_default_with_documented_values() -> None:
    wb = load_settings(env={}).writeback
    assert wb.enabled is False and wb.destinations == []
    assert wb.trigger == "disagreements" and wb.uid_policy == "new"
    assert (wb.contrast_agent, wb.no_contrast_agent, wb.contrast_route) == (
        "IV CONTRAST",
        "NONE",
        "IV",
    )
    assert wb.copies and wb.report


def test_the_values_written_read_back_as_the_study_reads_the_tag() -> None:
    wb = WritebackSettings()
    assert tag_says_contrast(wb.contrast_agent) is True
    assert tag_says_contrast(wb.no_contrast_agent) is False
    for value in ("N", "no", "None"):
        assert (
            tag_says_contrast(WritebackSettings(no_contrast_agent=value).no_contrast_agent) is False
        )


def test_toml_destinations(tmp_path: Path) -> None:
    path = tmp_path / "ivcontrast.toml"
    path.write_text(EXAMPLE)
    wb = load_settings(path, env={}).writeback
    assert wb.enabled and wb.trigger == "confident_disagreements" and wb.min_confidence == 0.95
    assert wb.contrast_ingredient == "IODINE"
    pacs, archive = wb.destinations
    assert isinstance(pacs, DicomDestination) and isinstance(archive, FolderDestination)
    assert (pacs.ae_title, pacs.port, pacs.tls, pacs.calling_ae) == ("ORTHANC", 4242, True, None)
    assert archive.path == Path("/srv/ivcontrast/corrected")


def test_destinations_from_the_environment() -> None:
    env = {
        "IVCONTRAST_WRITEBACK_ENABLED": "true",
        "IVCONTRAST_WRITEBACK_DESTINATIONS": json.dumps(
            [{"kind": "folder", "name": "out", "path": "/tmp/out"}]
        ),
    }
    wb = load_settings(env=env).writeback
    assert wb.enabled and wb.destinations[0].name == "out"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"writeback.enabled": True}, "without any"),
        ({"writeback.contrast_agent": "NO"}, "contrast_agent"),
        ({"writeback.contrast_agent": ""}, "contrast_agent"),
        ({"writeback.no_contrast_agent": "ABSENT"}, "no_contrast_agent"),
        ({"writeback.contrast_ingredient": "SALT"}, "contrast_ingredient"),
        ({"writeback.uid_prefix": "1.2.3"}, "uid_prefix"),
        ({"writeback.uid_prefix": "1.02.3."}, "uid_prefix"),
        ({"writeback.min_confidence": 0.2}, "min_confidence"),
        ({"writeback.trigger": "sometimes"}, "trigger"),
        ({"writeback.copies": False, "writeback.report": False}, "nothing to write back"),
        (
            {"writeback.destinations": [{"kind": "ftp", "name": "x", "path": "/x"}]},
            "destinations",
        ),
        (
            {
                "writeback.destinations": [
                    {"kind": "folder", "name": "a", "path": "/a"},
                    {"kind": "folder", "name": "a", "path": "/b"},
                ]
            },
            "unique",
        ),
        (
            {"writeback.destinations": [{"kind": "folder", "name": "../etc", "path": "/a"}]},
            "name",
        ),
        (
            {
                "writeback.destinations": [
                    {"kind": "dicom", "name": "p", "ae_title": "A" * 17, "host": "h", "port": 1}
                ]
            },
            "ae_title",
        ),
        (
            {
                "writeback.destinations": [
                    {
                        "kind": "dicom",
                        "name": "p",
                        "ae_title": "PACS",
                        "host": "h",
                        "port": 104,
                        "tls": True,
                        "tls_cert": "/c.pem",
                    }
                ]
            },
            "tls_cert and tls_key",
        ),
        (
            {
                "writeback.destinations": [
                    {
                        "kind": "dicom",
                        "name": "p",
                        "ae_title": "PACS",
                        "host": "h",
                        "port": 104,
                        "tls_ca": "/ca.pem",
                    }
                ]
            },
            "tls = false",
        ),
    ],
)
def test_invalid_settings_name_the_value(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env={}, overrides=overrides)
