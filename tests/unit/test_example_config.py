"""deploy/ivcontrast.toml is generated from the settings model and must match it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from ivcontrast.config import SECTIONS, Settings, WritebackSettings, load_settings
from ivcontrast.config_example import example_toml, main, toml_value

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "ivcontrast.toml"
REGENERATE = "python -m ivcontrast.config_example deploy/ivcontrast.toml"


def test_committed_example_is_the_generated_one() -> None:
    assert EXAMPLE.read_text() == example_toml(), (
        f"deploy/ivcontrast.toml differs from the settings model; regenerate it: {REGENERATE}"
    )


def test_example_loads_to_the_defaults() -> None:
    assert load_settings(EXAMPLE, env={}) == load_settings(env={}) == Settings.model_validate({})


def keys_in(text: str) -> dict[str, set[str]]:
    """Setting names per table, active or commented out (``# key = ...``)."""
    out: dict[str, set[str]] = {"": set()}
    table = ""
    for line in text.splitlines():
        header = re.fullmatch(r"(?:# )?\[\[?([a-z_.]+)\]\]?", line)
        if header:
            table = header.group(1)
            out.setdefault(table, set())
            continue
        key = re.match(r"(?:# )*([a-z_]+) = ", line)
        if key:
            out[table].add(key.group(1))
    return out


def test_every_setting_is_in_the_example_with_a_comment() -> None:
    text = EXAMPLE.read_text()
    found = keys_in(text)
    top = {name for name in Settings.model_fields if name not in SECTIONS}
    assert found[""] == top
    for section, model in SECTIONS.items():
        listed = found[section]
        expected = set(model.model_fields)
        if section == "writeback":
            expected.discard("destinations")  # shown as [[writeback.destinations]] examples
        assert listed == expected, section
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"(?:# )?[a-z_]+ = ", line) and not line.startswith("# # "):
            above = lines[i - 1]
            # Each setting follows its comment, or carries it inline (example entries).
            assert above.startswith("# ") or " # " in line or above.startswith("# [["), line


def test_example_destinations_work_once_uncommented() -> None:
    text = EXAMPLE.read_text()
    blocks = re.findall(r"^# \[\[writeback\.destinations\]\]\n(?:^# .*\n)+", text, re.M)
    assert len(blocks) == 2
    uncommented = "".join(
        "\n".join(line[2:] for line in block.splitlines()) + "\n" for block in blocks
    )
    parsed = tomllib.loads(uncommented)
    settings = WritebackSettings.model_validate({"enabled": True, **parsed["writeback"]})
    assert [d.kind for d in settings.destinations] == ["folder", "dicom"]
    assert {d.name for d in settings.destinations} == {"archive", "pacs"}


def test_a_setting_without_a_comment_is_refused() -> None:
    class Section(BaseModel):
        """A section."""

        documented: int = Field(1, description="has one")
        undocumented: int = 2

    class Model(BaseModel):
        section: Section = Section.model_validate({})

    with pytest.raises(ValueError, match=r"section\.undocumented"):
        example_toml(Model)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (True, "true"),
        (3, "3"),
        (0.5, "0.5"),
        (1e-6, "1e-06"),
        ('say "hi"\\', '"say \\"hi\\"\\\\"'),
        (Path("/a b"), '"/a b"'),
        (["A", "B@host"], '["A", "B@host"]'),
    ],
)
def test_toml_values_round_trip(value: object, literal: str) -> None:
    assert toml_value(value) == literal
    parsed = tomllib.loads(f"x = {literal}")["x"]
    assert parsed == (str(value) if isinstance(value, Path) else value)


def test_main_writes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "ivcontrast.toml"
    assert main([str(target)]) == 0
    assert target.read_text() == example_toml()
