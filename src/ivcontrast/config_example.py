"""The example configuration file, generated from the settings model.

``deploy/ivcontrast.toml`` is the output of :func:`example_toml`: every setting with its
default and what it means, so the file cannot drift from ``ivcontrast.config`` (a unit test
compares them). Regenerate it after changing a setting::

    .venv/bin/python -m ivcontrast.config_example deploy/ivcontrast.toml

A setting's comment is its ``Field(description=...)``; settings declared without one take
their comment from :data:`COMMENTS` here. Settings without a default value (``None``) are
written commented out, with a placeholder.
"""

from __future__ import annotations

import inspect
import json
import sys
import textwrap
import types
import typing
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ivcontrast.config import CONFIG_ENV, ENV_PREFIX, Settings

HEADER = f"""\
ivcontrast settings: every setting with its default value and what it means.

Generated from the settings model (ivcontrast.config) by
`python -m ivcontrast.config_example`; do not edit this copy by hand, copy it.

Precedence, lowest first: built-in defaults < this file (`-c FILE` or ${CONFIG_ENV})
< environment variables < command-line flags. Environment names are
{ENV_PREFIX}<SETTING> for top-level settings and {ENV_PREFIX}<SECTION>_<SETTING>
inside a section, e.g. {ENV_PREFIX}SCP_PORT=104 or {ENV_PREFIX}DATABASE_URL=...
A file needs only the settings it changes.
"""

# Comments for settings declared without a description (key: "section.field" or "field").
COMMENTS: dict[str, str] = {
    "data_dir": "the node's data: SQLite store, spool (unless spool_dir is set)",
    "log_level": "log level of every process",
    "log_format": "'text' lines, or one JSON object per line (for log shippers)",
    "scp.ae_title": "our AE title: what the PACS calls us (called AE) and we send as",
    "scp.bind_address": "address the DICOM listener binds; 0.0.0.0 = every interface",
    "scp.port": "DICOM port (104 is the standard one but needs privileges)",
    "scp.require_called_ae": "reject associations whose called AE title is not ours",
    "scp.acse_timeout": "seconds to wait for association negotiation messages",
    "scp.handshake_timeout": "seconds a new connection has to send its A-ASSOCIATE-RQ",
    "scp.dimse_timeout": "seconds to wait for a DIMSE message (e.g. the next C-STORE)",
    "scp.network_timeout": "seconds of network silence before an association is aborted",
    "scp.tls_cert": "server certificate (PEM); with tls_key, the listener speaks DICOM TLS",
    "scp.tls_key": "private key (PEM) of tls_cert",
    "worker.max_attempts": "attempts of a check or classify job before the series fails",
    "worker.retry_backoff_seconds": "first retry delay of a failed job; doubled each attempt",
    "classifier.device": "inference device: auto = CUDA when PyTorch sees a GPU, else CPU",
    "writeback.enabled": "write corrected copies and reports back (needs a destination)",
    "writeback.trigger": "which results are written back (see the section's comment)",
    "writeback.min_confidence": "for the 'confident' triggers: the least confidence in a label",
    "writeback.max_attempts": "attempts per destination before a write-back job fails",
    "web.enabled": "run the HTTP API and dashboard in `ivcontrast serve`",
    "web.host": "address the web app binds; keep 127.0.0.1 unless a token is set",
    "web.port": "HTTP port of the API, dashboard, /health and /metrics",
    "web.show_patient_names": "show patient names, IDs and accession numbers in the dashboard, "
    "API and exports",
    "writeback.destinations": "where corrected copies and reports go: [[writeback.destinations]]"
    " entries, each a folder or a DICOM node",
    "writeback.destinations.tls": "connect with DICOM TLS",
    "writeback.destinations.tls_key": "private key (PEM) of tls_cert",
}

# Values for the required fields of the example list items (write-back destinations).
EXAMPLE_VALUES: dict[str, dict[str, Any]] = {
    "FolderDestination": {"name": "archive", "path": "/var/lib/ivcontrast/corrected"},
    "DicomDestination": {
        "name": "pacs",
        "ae_title": "ORTHANC",
        "host": "pacs.example.org",
        "port": 4242,
    },
}
WIDTH = 92


def example_toml(model: type[BaseModel] = Settings) -> str:
    """The commented TOML file of every setting of ``model`` with its default."""
    lines = _comment_block(HEADER)
    sections: list[tuple[str, FieldInfo]] = []
    for name, info in model.model_fields.items():
        if _is_model(info.annotation):
            sections.append((name, info))
        else:
            lines += ["", *_setting(name, name, info)]
    for name, info in sections:
        section = typing.cast(type[BaseModel], info.annotation)
        lines += ["", ""]
        lines += _comment_block(section.__doc__ or "")
        lines.append(f"[{name}]")
        for field_name, field_info in section.model_fields.items():
            key = f"{name}.{field_name}"
            items = _list_item_models(field_info.annotation)
            if items:
                # A list of tables: its default (empty) is no entry at all, since a
                # "key = []" line would clash with the [[key]] entries a user adds.
                about = f"{_describe(key, field_info)} (none by default)"
                lines += ["", *(f"# {line}" for line in textwrap.wrap(about, WIDTH))]
                for item in items:
                    lines += ["", *_example_item(key, item)]
            else:
                lines += ["", *_setting(field_name, key, field_info)]
    return "\n".join(lines).rstrip() + "\n"


def _setting(name: str, key: str, info: FieldInfo) -> list[str]:
    lines = [f"# {line}" for line in textwrap.wrap(_describe(key, info), WIDTH)]
    default = info.get_default(call_default_factory=True)
    if default is None:
        lines.append(f"# {name} = {_placeholder(info.annotation)}")
    else:
        lines.append(f"{name} = {toml_value(default)}")
    return lines


def _describe(key: str, info: FieldInfo) -> str:
    text = info.description or COMMENTS.get(key)
    if not text:
        raise ValueError(f"setting {key} has neither a description nor a comment in COMMENTS")
    notes = _constraints(info)
    if _is_optional(info.annotation) and info.get_default(call_default_factory=True) is None:
        notes.append("not set by default")
    if notes:
        text = f"{text} ({'; '.join(notes)})"
    return text


def _constraints(info: FieldInfo) -> list[str]:
    notes: list[str] = []
    choices = _literal_choices(info.annotation)
    if choices:
        notes.append("one of: " + ", ".join(str(c) for c in choices))
    for meta in info.metadata:
        if isinstance(meta, Ge):
            notes.append(f">= {meta.ge}")
        elif isinstance(meta, Gt):
            notes.append(f"> {meta.gt}")
        elif isinstance(meta, Le):
            notes.append(f"<= {meta.le}")
        elif isinstance(meta, Lt):
            notes.append(f"< {meta.lt}")
        elif isinstance(meta, MaxLen):
            notes.append(f"at most {meta.max_length} characters")
        elif isinstance(meta, MinLen) and meta.min_length > 1:
            notes.append(f"at least {meta.min_length} characters")
    return notes


def _example_item(key: str, model: type[BaseModel]) -> list[str]:
    """A commented-out ``[[section.list]]`` entry: required fields get example values.

    Removing one ``# `` from each line gives a working entry; optional settings that are
    unset by default stay commented.
    """
    doc = (model.__doc__ or model.__name__).strip()
    lines = [f"# {line}" for line in textwrap.wrap(f"Example: {doc}", WIDTH)]
    lines.append(f"# [[{key}]]")
    examples = EXAMPLE_VALUES.get(model.__name__, {})
    for name, info in model.model_fields.items():
        choices = _literal_choices(info.annotation)
        if info.is_required():
            value = choices[0] if choices else examples[name]
            lines.append(f"# {name} = {toml_value(value)}")
            continue
        default = info.get_default(call_default_factory=True)
        comment = _describe(f"{key}.{name}", info)
        if default is None:
            lines.append(f"# # {name} = {_placeholder(info.annotation)}  # {comment}")
        else:
            lines.append(f"# {name} = {toml_value(default)}  # {comment}")
    return lines


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal (booleans, numbers, strings, paths and lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return toml_value(value.value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        # A JSON string is a valid TOML basic string (same escapes, \uXXXX included).
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _placeholder(annotation: Any) -> str:
    inner = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    kind = inner[0]
    if kind in (int, float):
        return "0"
    if kind is bool:
        return "false"
    return '"..."'


def _comment_block(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in inspect.cleandoc(text).splitlines()]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _literal_choices(annotation: Any) -> tuple[Any, ...]:
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()


def _list_item_models(annotation: Any) -> list[type[BaseModel]]:
    """The model classes of a ``list[Model]`` or ``list[Annotated[A | B, ...]]`` field."""
    if typing.get_origin(annotation) is not list:
        return []
    (item,) = typing.get_args(annotation)
    if typing.get_origin(item) is typing.Annotated:
        item = typing.get_args(item)[0]
    members = (
        typing.get_args(item)
        if typing.get_origin(item) in (typing.Union, types.UnionType)
        else (item,)
    )
    return [m for m in members if _is_model(m)]


def main(argv: Sequence[str] | None = None) -> int:
    """Write the example to the path given, or to stdout."""
    args = list(sys.argv[1:] if argv is None else argv)
    text = example_toml()
    if args:
        Path(args[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
