"""Settings precedence: defaults < TOML file < IVCONTRAST_* environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivcontrast.cli import build_parser, settings_overrides
from ivcontrast.config import Settings, SettingsError, load_settings


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ivcontrast.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    s = load_settings(env={})
    assert s.scp.port == 11112 and s.scp.ae_title == "IVCONTRAST"
    assert s.worker.quiet_seconds == 60 and s.worker.settle_seconds == 5
    assert s.web.host == "127.0.0.1" and s.writeback.enabled is False
    assert s.db_url.startswith("sqlite:///") and s.db_url.endswith("ivcontrast-data/ivcontrast.db")
    assert s.spool_path == Path("ivcontrast-data/spool")


def test_each_layer_overrides_the_one_below(tmp_path: Path) -> None:
    toml = write_toml(
        tmp_path,
        'data_dir = "/srv/ivc"\n[scp]\nport = 104\nae_title = "FROMFILE"\nallowed_calling_aes = ["PACS"]\n'
        "[worker]\nquiet_seconds = 30\n",
    )
    env = {"IVCONTRAST_SCP_PORT": "4242", "IVCONTRAST_WORKER_SETTLE_SECONDS": "2.5"}
    s = load_settings(toml, env=env, overrides={"scp.port": 5555})
    assert s.data_dir == Path("/srv/ivc")  # file
    assert s.scp.ae_title == "FROMFILE"  # file
    assert s.worker.quiet_seconds == 30  # file
    assert s.worker.settle_seconds == 2.5  # env over default
    assert s.scp.port == 5555  # flag over env over file
    assert s.scp.allowed_calling_aes == ["PACS"]
    assert load_settings(toml, env=env).scp.port == 4242  # env over file


def test_config_file_from_environment_and_list_values(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, "[scp]\nport = 2000\n")
    env = {
        "IVCONTRAST_CONFIG": str(toml),
        "IVCONTRAST_SCP_ALLOWED_CALLING_AES": "PACS@10.0.0.5, MODALITY",
    }
    s = load_settings(env=env)
    assert s.scp.port == 2000
    assert s.scp.allowed_calling_aes == ["PACS@10.0.0.5", "MODALITY"]
    env["IVCONTRAST_SCP_ALLOWED_CALLING_AES"] = '["A","B"]'
    assert load_settings(env=env).scp.allowed_calling_aes == ["A", "B"]


def test_cli_flags_become_overrides() -> None:
    args = build_parser("series").parse_args(
        ["--data-dir", "/d", "--set", "worker.quiet_seconds=7", "series"]
    )
    overrides = settings_overrides(args)
    assert overrides["data_dir"] == "/d" and overrides["worker.quiet_seconds"] == "7"
    assert (
        load_settings(
            env={"IVCONTRAST_WORKER_QUIET_SECONDS": "99"}, overrides=overrides
        ).worker.quiet_seconds
        == 7
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IVCONTRAST_SCP_PORTT": "1"}, "IVCONTRAST_SCP_PORTT: no such setting"),
        ({"IVCONTRAST_SCP_PORT": "seventy"}, "scp.port"),
        ({"IVCONTRAST_SCP_AE_TITLE": "A" * 17}, "scp.ae_title"),
        ({"IVCONTRAST_LOG_LEVEL": "LOUD"}, "log_level"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env=env)


def test_bad_file_is_named(tmp_path: Path) -> None:
    bad = write_toml(tmp_path, "[scp\nport=1")
    with pytest.raises(SettingsError, match=r"ivcontrast\.toml: not valid TOML"):
        load_settings(bad, env={})
    with pytest.raises(SettingsError, match="configuration file not found"):
        load_settings(tmp_path / "missing.toml", env={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[scp]\nprot = 1\n")
    with pytest.raises(SettingsError, match=r"scp\.prot"):
        load_settings(unknown, env={})


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(Exception, match="frozen"):
        s.scp.port = 1  # type: ignore[misc]


def test_json_logs_are_one_valid_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import logging

    from ivcontrast.logs import configure_logging

    configure_logging(load_settings(env={}, overrides={"log_format": "json"}))
    logging.getLogger("ivcontrast.test").warning(
        'series "%s" done', "1.2.3", extra={"series_uid": "1.2.3"}
    )
    entry = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert entry["message"] == 'series "1.2.3" done' and entry["series_uid"] == "1.2.3"
    assert entry["level"] == "WARNING"


@pytest.mark.parametrize(
    "value",
    ["PACS@10.0.0.5, MODALITY", '["PACS@10.0.0.5", "MODALITY"]', " PACS@10.0.0.5,MODALITY,"],
)
def test_set_takes_a_list_in_comma_or_json_form(value: str) -> None:
    args = build_parser("scp").parse_args(["--set", f"scp.allowed_calling_aes={value}", "scp"])
    s = load_settings(env={}, overrides=settings_overrides(args))
    assert s.scp.allowed_calling_aes == ["PACS@10.0.0.5", "MODALITY"]


def test_set_of_a_list_over_the_environment_and_an_empty_list() -> None:
    env = {"IVCONTRAST_SCP_ALLOWED_CALLING_AES": "FROMENV"}
    s = load_settings(env=env, overrides={"scp.allowed_calling_aes": "A,B"})
    assert s.scp.allowed_calling_aes == ["A", "B"]
    assert (
        load_settings(env=env, overrides={"scp.allowed_calling_aes": "[]"}).scp.allowed_calling_aes
        == []
    )


def test_set_of_a_list_with_broken_json_names_it() -> None:
    with pytest.raises(SettingsError, match=r"--set scp\.allowed_calling_aes: not a JSON list"):
        load_settings(env={}, overrides={"scp.allowed_calling_aes": '["A", '})


def test_set_leaves_text_settings_as_given() -> None:
    s = load_settings(env={}, overrides={"writeback.description_suffix": " (x, y)"})
    assert s.writeback.description_suffix == " (x, y)"
