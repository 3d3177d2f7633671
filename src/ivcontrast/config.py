"""One typed settings object for every process of ivcontrast.

Precedence, lowest first: built-in defaults < TOML file < ``IVCONTRAST_*`` environment
variables < command-line flags. The object is built once in ``main()`` and passed down
explicitly; nothing reads the environment behind its back.

Environment names are ``IVCONTRAST_<FIELD>`` for top-level fields and
``IVCONTRAST_<SECTION>_<FIELD>`` for section fields, e.g. ``IVCONTRAST_SCP_PORT=11113``.
``IVCONTRAST_CONFIG`` names the TOML file. Lists take JSON (``["A","B"]``) or commas (``A,B``),
in the environment and in ``--set`` alike.
"""

from __future__ import annotations

import json
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ivcontrast.vocabulary import NEGATIVE_TAG_VALUES, DeviceName

ENV_PREFIX = "IVCONTRAST_"
CONFIG_ENV = "IVCONTRAST_CONFIG"


class SettingsError(ValueError):
    """The configuration cannot be used; the message says which value and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ScpSettings(_Section):
    """The DICOM listener (C-ECHO, C-STORE SCP)."""

    ae_title: str = Field(default="IVCONTRAST", min_length=1, max_length=16)
    bind_address: str = "0.0.0.0"
    port: int = Field(default=11112, ge=0, le=65535)
    max_associations: int = Field(
        default=16, ge=1, description="concurrent associations per process"
    )
    max_pdu: int = Field(default=262144, ge=0, description="maximum PDU we receive; 0 = unlimited")
    processes: int = Field(
        default=0,
        ge=0,
        description="listener processes sharing the port (SO_REUSEPORT); 0 = one per CPU core",
    )
    require_called_ae: bool = True
    allowed_calling_aes: list[str] = Field(
        default_factory=list, description='"AE" or "AE@host" entries; empty = accept any calling AE'
    )
    min_free_mb: int = Field(
        default=1024,
        ge=0,
        description="below this much free space in the spool, C-STORE answers 0xA700",
    )
    acse_timeout: float = Field(default=30.0, gt=0)
    handshake_timeout: float = Field(default=5.0, gt=0)
    dimse_timeout: float = Field(default=60.0, gt=0)
    network_timeout: float = Field(default=60.0, gt=0)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = Field(
        default=None, description="CA bundle; when set, peers must present a certificate"
    )

    @field_validator("ae_title")
    @classmethod
    def _ae_title_chars(cls, value: str) -> str:
        value = value.strip()
        if not value or "\\" in value or not value.isprintable():
            raise ValueError("AE title must be 1-16 printable characters without backslash")
        return value


class WorkerSettings(_Section):
    """Completion sweep, durable job queue and the series pipeline."""

    sweep_seconds: float = Field(default=1.0, gt=0, description="how often completion is checked")
    quiet_seconds: float = Field(
        default=60.0, ge=0, description="complete after this long without an instance"
    )
    settle_seconds: float = Field(
        default=5.0,
        ge=0,
        description="complete sooner once every delivering association is released",
    )
    lease_seconds: float = Field(
        default=300.0, gt=0, description="a job's lease; a worker that dies holds its job this long"
    )
    reap_seconds: float = Field(
        default=30.0, gt=0, description="how often a worker puts jobs with expired leases back"
    )
    max_attempts: int = Field(default=3, ge=1)
    retry_backoff_seconds: float = Field(default=10.0, ge=0)
    poll_seconds: float = Field(default=0.5, gt=0, description="idle wait between queue polls")
    min_slices: int = Field(default=10, ge=1, description="fewer axial slices than this: skipped")
    classify_derived: bool = Field(
        default=False, description="also classify DERIVED/SECONDARY image series"
    )
    spool_retention_days: float = Field(
        default=0.0,
        ge=0,
        description="remove the spooled files of classified and skipped series this many days "
        "after their last instance (results stay); 0 keeps every file",
    )


class ClassifierSettings(_Section):
    """Model package and inference backend."""

    model: Path | None = Field(
        default=None, description="model package directory; None = the bundled default"
    )
    device: DeviceName = "auto"
    threads: int = Field(default=0, ge=0, description="CPU inference threads; 0 = all cores")
    batch_size: int = Field(
        default=0, ge=0, description="slices per inference batch; 0 = 32 on the CPU, 256 on CUDA"
    )
    physics: bool = Field(
        default=True,
        description="measure the blood pool's HU as a second opinion beside the network",
    )
    physics_threshold_hu: float = Field(
        default=125.0, ge=60.0, le=400.0, description="blood at or above this HU is enhanced"
    )
    physics_margin_hu: float = Field(
        default=25.0,
        ge=0.0,
        le=200.0,
        description="the physics opinion overrules the network into review only when the blood "
        "pool lies at least this far from physics_threshold_hu",
    )
    review_band: float | None = Field(
        default=None,
        ge=0.0,
        lt=0.5,
        description="probabilities this close to the threshold go to review; "
        "None = the model card's review_band",
    )


DESTINATION_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Read as "no contrast" by the study's rule (vocabulary); "" removes the attribute.
NO_CONTRAST_AGENT_VALUES = {"", *NEGATIVE_TAG_VALUES}
# Enumerated values of Contrast/Bolus Ingredient (0018,1048); "" leaves the original alone.
CONTRAST_INGREDIENTS = {"", "IODINE", "GADOLINIUM", "CARBON DIOXIDE", "BARIUM"}


def _check_ae_title(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 16 or "\\" in value or not value.isprintable():
        raise ValueError("AE title must be 1-16 printable characters without backslash")
    return value


class FolderDestination(_Section):
    """Write corrected copies and reports under ``<path>/<StudyUID>/<SeriesUID>/``."""

    kind: Literal["folder"]
    name: str = Field(pattern=DESTINATION_NAME)
    path: Path


class DicomDestination(_Section):
    """C-STORE corrected copies and reports to a DICOM node (a PACS)."""

    kind: Literal["dicom"]
    name: str = Field(pattern=DESTINATION_NAME)
    ae_title: str = Field(description="the destination's (called) AE title")
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    calling_ae: str | None = Field(default=None, description="our AE title; default scp.ae_title")
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="ACSE, DIMSE and network timeouts"
    )
    max_pdu: int = Field(default=262144, ge=0, description="maximum PDU we receive; 0 = unlimited")
    tls: bool = False
    tls_ca: Path | None = Field(
        default=None, description="CA bundle that signs the peer's certificate; default system CAs"
    )
    tls_cert: Path | None = Field(
        default=None, description="our client certificate, if the peer asks"
    )
    tls_key: Path | None = None

    @field_validator("ae_title", "calling_ae")
    @classmethod
    def _ae_title_chars(cls, value: str | None) -> str | None:
        return None if value is None else _check_ae_title(value)

    @model_validator(mode="after")
    def _tls_pairs(self) -> DicomDestination:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if not self.tls and (self.tls_ca or self.tls_cert):
            raise ValueError("tls_ca/tls_cert/tls_key given but tls = false")
        return self


Destination = Annotated[FolderDestination | DicomDestination, Field(discriminator="kind")]


class WritebackSettings(_Section):
    """Corrected copies and reports sent back to a PACS or a folder (off by default).

    Nothing is queued or sent while ``enabled`` is false. ``trigger`` picks the results that
    are written back: ``all``; ``disagreements`` (the original ContrastBolusAgent is missing
    or says the opposite); ``confident`` (the model's confidence in its own label, i.e. the
    probability of the label it gave, is at least ``min_confidence``); or
    ``confident_disagreements`` (both).
    """

    enabled: bool = False
    trigger: Literal["all", "disagreements", "confident", "confident_disagreements"] = (
        "disagreements"
    )
    min_confidence: float = Field(default=0.9, ge=0.5, le=1.0)
    review: Literal["skip", "network"] = Field(
        default="skip",
        description="series in review (network and physics disagree, or an unsure "
        "probability): skip = write nothing back; network = write the network's call",
    )
    copies: bool = Field(default=True, description="send corrected copies of the series")
    report: bool = Field(default=True, description="send a DICOM SR of the finding")
    contrast_agent: str = Field(
        default="IV CONTRAST", max_length=64, description="ContrastBolusAgent written for contrast"
    )
    no_contrast_agent: str = Field(
        default="NONE",
        description="ContrastBolusAgent for no contrast: NONE, N, NO, or '' to remove",
    )
    contrast_route: str = Field(
        default="IV",
        max_length=64,
        description="ContrastBolusRoute for contrast; '' leaves it alone",
    )
    contrast_ingredient: str = Field(
        default="",
        description="ContrastBolusIngredient for contrast (e.g. IODINE); '' leaves it alone",
    )
    uid_policy: Literal["new", "keep"] = Field(
        default="new",
        description="new Series/SOP Instance UIDs (a PACS may discard a re-sent UID) or keep",
    )
    uid_prefix: str = Field(
        default="1.2.826.0.1.3680043.8.498.",
        description="root of the new UIDs; your organisation's",
    )
    description_suffix: str = Field(
        default=" (contrast corrected)", max_length=32, description="appended to SeriesDescription"
    )
    max_attempts: int = Field(default=5, ge=1)
    backoff_seconds: float = Field(
        default=30.0, ge=0, description="first retry delay; doubled on each further attempt"
    )
    destinations: list[Destination] = Field(default_factory=list)

    @field_validator("contrast_agent")
    @classmethod
    def _agent_reads_as_contrast(cls, value: str) -> str:
        value = value.strip()
        if not value or value.upper() in NO_CONTRAST_AGENT_VALUES or "\\" in value:
            raise ValueError("must be a non-empty value that does not read as 'no contrast'")
        return value

    @field_validator("no_contrast_agent")
    @classmethod
    def _agent_reads_as_none(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in NO_CONTRAST_AGENT_VALUES:
            raise ValueError("must be NONE, N, NO or '' (read as 'no contrast')")
        return value

    @field_validator("contrast_ingredient")
    @classmethod
    def _ingredient(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in CONTRAST_INGREDIENTS:
            raise ValueError(f"must be one of {sorted(CONTRAST_INGREDIENTS)}")
        return value

    @field_validator("contrast_route")
    @classmethod
    def _route(cls, value: str) -> str:
        value = value.strip()
        if "\\" in value:
            raise ValueError("must not contain a backslash")
        return value

    @field_validator("uid_prefix")
    @classmethod
    def _uid_prefix(cls, value: str) -> str:
        parts = value.split(".")
        if (
            len(value) > 40
            or parts[-1] != ""
            or not all(p.isdigit() and (p == "0" or not p.startswith("0")) for p in parts[:-1])
        ):
            raise ValueError("must be a UID root of at most 40 characters ending in '.'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WritebackSettings:
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ValueError(f"destination names must be unique (got {names})")
        if self.enabled and not self.destinations:
            raise ValueError("enabled without any [[writeback.destinations]]")
        if not (self.copies or self.report):
            raise ValueError("copies and report are both off: nothing to write back")
        return self


class WebSettings(_Section):
    """Read-only HTTP API and dashboard."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token: str | None = Field(
        default=None,
        description="when set, every request needs 'Authorization: Bearer <token>' "
        "(browsers sign in once at /login and get a cookie)",
    )
    public_health: bool = Field(
        default=True,
        description="/health answers without the token (for load balancers and probes), "
        "with only ok/warn/fail per check; details need the token",
    )
    login_failures_per_minute: int = Field(
        default=10,
        ge=1,
        description="wrong tokens a client address may try in a minute before it gets 429",
    )
    show_patient_names: bool = False
    worker_stale_seconds: float = Field(
        default=60.0, gt=0, description="/health fails when no worker heartbeat is newer than this"
    )
    thumbnails: int = Field(default=8, ge=1, le=32, description="slices shown on a series page")


class Settings(_Section):
    """Everything a process of ivcontrast needs to know, in one place."""

    data_dir: Path = Path("ivcontrast-data")
    spool_dir: Path | None = Field(
        default=None, description="received files; default <data_dir>/spool"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite in <data_dir>"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    scp: ScpSettings = Field(default_factory=ScpSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    writeback: WritebackSettings = Field(default_factory=WritebackSettings)
    web: WebSettings = Field(default_factory=WebSettings)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def spool_path(self) -> Path:
        return self.spool_dir if self.spool_dir is not None else self.data_dir / "spool"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ivcontrast.db').resolve()}"


SECTIONS: dict[str, type[_Section]] = {
    name: typing.cast(type[_Section], field.annotation)
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, _Section)
}


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings: defaults < TOML file < environment < ``overrides``.

    ``overrides`` maps dotted keys (``"scp.port"``, ``"data_dir"``) to values, as the CLI
    flags give them. ``config_file`` defaults to ``$IVCONTRAST_CONFIG`` when that is set.
    """
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    path = config_file if config_file is not None else env.get(CONFIG_ENV)
    if path:
        _deep_update(merged, _read_toml(Path(path)))
    _deep_update(merged, _from_env(env))
    for key, value in (overrides or {}).items():
        if value is not None:
            if isinstance(value, str) and _is_list(_annotation(key.split("."))):
                value = _parse_list(f"--set {key}", value)
            _deep_update(merged, _nest(key.split("."), value))
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        section, field_name, model = _resolve_env_key(key)
        if field_name is None:
            raise SettingsError(f"{name}: no such setting")
        annotation = model.model_fields[field_name].annotation
        value = _parse_list(name, raw) if _is_list(annotation) else raw.strip()
        _deep_update(out, _nest([section, field_name] if section else [field_name], value))
    return out


def _resolve_env_key(key: str) -> tuple[str | None, str | None, type[_Section]]:
    for section, model in SECTIONS.items():
        prefix = section + "_"
        if key.startswith(prefix) and key[len(prefix) :] in model.model_fields:
            return section, key[len(prefix) :], model
    if key in Settings.model_fields and key not in SECTIONS:
        return None, key, Settings
    return None, None, Settings


def _annotation(parts: list[str]) -> Any:
    """The type of the setting at a dotted key (``scp.allowed_calling_aes``); None if none."""
    model: type[BaseModel] = Settings
    for part in parts[:-1]:
        section = SECTIONS.get(part) if model is Settings else None
        if section is None:
            return None
        model = section
    field = model.model_fields.get(parts[-1])
    return None if field is None else field.annotation


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) is list:
        return True
    # ``list[str] | None``: a list all the same
    return any(typing.get_origin(arg) is list for arg in typing.get_args(annotation))


def _parse_list(where: str, raw: str) -> Any:
    """A list given as text (environment, ``--set``): JSON, or items separated by commas."""
    text = raw.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{where}: not a JSON list ({exc})") from None
    return [item.strip() for item in text.split(",") if item.strip()]


def _nest(parts: list[str], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out


def _deep_update(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"])
        lines.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    return "invalid settings: " + "; ".join(lines)
