"""Configuration: one TOML file plus environment variables for secrets.

Validated completely at start-up (fail before the first job, not mid-run) and every error
names the key, e.g. ``connection[0].trust.base_url``. Secrets are never written in the
file: a connection names the environment variable (``token_env``) or a file
(``token_file``) that holds them, and ``repr``/``str`` of a resolved secret is masked.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ehr_bridge.errors import ConfigError

DEFAULT_CONFIG_NAME = "ehr-bridge.toml"
#: the zone the CLI prints times in unless ``[display] timezone`` says otherwise
DEFAULT_DISPLAY_ZONE = "Europe/London"


class Secret:
    """A secret value whose ``str`` and ``repr`` never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that needs to send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: what a proxy URL may be: scheme, host and port (a user and password would be a secret
#: written in the config; the environment's proxy variables are never read)
_PROXY_URL = re.compile(r"https?://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?/?")


def check_proxy_url(value: str | None) -> str | None:
    """``value`` if it names a proxy by scheme, host and port only; else a ValueError."""
    if value is not None and not _PROXY_URL.fullmatch(value):
        raise ValueError("an http:// or https:// host and port, no user, password or path")
    return value


class DatabaseConfig(_Section):
    """Where the state (cursors, ledger, outbox, quarantine) lives."""

    url: str = "sqlite:///state/ehr-bridge.db"
    #: let a second `ehr-bridge run` open the same SQLite file (refused by default)
    allow_shared_sqlite: bool = False


class LoggingConfig(_Section):
    """Log level and format; PHI never reaches a log line whatever the level."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file: str | None = None


class DisplayConfig(_Section):
    """How the CLI shows things to people: the zone its tables print times in.

    Times are stored and sent in UTC (``--json`` prints them so); tables and ``status``
    print them to the second in this IANA zone, by default Europe/London, the clock the
    service and its standards use.
    """

    timezone: str = DEFAULT_DISPLAY_ZONE

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; give an IANA name such as Europe/London or UTC"
            ) from None
        return value

    def zone(self) -> ZoneInfo:
        """The display zone."""
        return ZoneInfo(self.timezone)


class AdapterConfig(_Section):
    """An adapter by registered name plus its own options, validated by the adapter."""

    model_config = ConfigDict(extra="allow", frozen=True)
    adapter: str

    def options(self) -> dict[str, Any]:
        """The adapter-specific keys (everything but ``adapter``)."""
        return dict(self.model_extra or {})


class ProviderOrgConfig(_Section):
    """The provider organisation referrals are referred on to (ServiceRequest.performer)."""

    code: str = Field(min_length=1, description="Provider code as the trust system knows it")
    display: str = "Online therapy provider"
    ods_code: str | None = None


class ScheduleConfig(_Section):
    """How often the daemon runs each flow, in seconds, and how many writes push runs at once.

    ``push_concurrency`` bounds the writes at the trust at one time for this connection (a
    write mostly waits for the trust: one at a time at 50 ms is 20 writes a second). Lower
    it for a trust that asks for fewer parallel requests; 1 writes strictly one by one.
    """

    pull_seconds: float = Field(default=300, gt=0)
    deliver_seconds: float = Field(default=60, gt=0)
    collect_seconds: float = Field(default=60, gt=0)
    push_seconds: float = Field(default=30, gt=0)
    #: the risk lane (collect, write and acknowledge risks ahead of everything else)
    risk_seconds: float = Field(default=15, gt=0, le=300)
    push_concurrency: int = Field(default=8, ge=1, le=64, strict=True)
    #: longest one run of one flow may take (docs/operations.md, "Deadlines and stopping"):
    #: past it the call in flight is abandoned and the next run goes on from what is stored
    flow_deadline_seconds: float = Field(default=300, gt=0, le=86_400)
    #: most pages one pull run follows: a trust whose paging never ends (fresh tokens for
    #: ever) stops here with an error in `status`; the next run goes on from the cursor
    max_pull_pages: int = Field(default=10_000, ge=1, strict=True)


class RetryConfig(_Section):
    """Backoff for write-back items: exponential with full jitter, capped, then dead letter."""

    max_attempts: int = Field(default=8, ge=1, le=100)
    base_delay_seconds: float = Field(default=5, ge=0)
    max_delay_seconds: float = Field(default=900, ge=0)
    lease_seconds: float = Field(default=120, gt=0)


class ScoresConfig(_Section):
    """What this connection accepts as a score besides a total checked against its items.

    ``itemless_totals`` names the measures (catalogue keys, e.g. ``phq9``) whose total may
    be written back without its item answers; the catalogue must allow it for the measure
    too. Empty (the default): a total without its items is quarantined, never written.
    """

    itemless_totals: list[str] = Field(default_factory=list)


class RiskRuleConfig(_Section):
    """A questionnaire answer that raises a risk (``domain.risk.ItemRule``)."""

    measure: str
    item: int = Field(ge=1, strict=True)
    at_least: int = Field(ge=1, strict=True)
    level: Literal["routine_review", "urgent", "immediate"]
    #: the risk's SNOMED CT concept id and display; PHQ-9 item 9 has one built in
    snomed_code: str | None = Field(default=None, pattern=r"^[0-9]{6,18}$")
    snomed_display: str | None = None


class RiskConfig(_Section):
    """Risk events: their lane, how soon the trust must acknowledge, how often to page.

    Risks (PHQ-9 item 9 above zero, a provider's Flag, RiskAssessment or DetectedIssue)
    are collected and written back on their own short interval (``[connection.schedule]
    risk_seconds``), ahead of every routine
    item. One not acknowledged at the trust within ``acknowledge_within_minutes`` (or that
    cannot be written at all) pages through the alert channel at once and again every
    ``repeat_alert_minutes`` until acknowledged or resolved (docs/clinical-safety.md).
    ``rules`` replaces the default rule (PHQ-9 item 9 >= 1: urgent); an empty list keeps
    only the provider's own risk resources.
    """

    acknowledge_within_minutes: float = Field(default=60, gt=0, le=24 * 60)
    repeat_alert_minutes: float = Field(default=30, gt=0, le=24 * 60)
    rules: list[RiskRuleConfig] | None = None


class ConnectionConfig(_Section):
    """One trust record system connected to one provider platform."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,62}$")
    enabled: bool = True
    #: a test connection (simulators, demo, a trust's test system): NHS numbers in the
    #: 999 range reserved for testing are accepted only here; never on a live connection
    test_connection: bool = False
    #: a Scottish CHI or Northern Ireland H&C number where the NHS number should be:
    #: "quarantine" the referral (default), or "local_id": accept it, know the patient by
    #: the trust's local id only and never carry that number as an NHS number
    other_uk_numbers: Literal["quarantine", "local_id"] = "quarantine"
    mapping: Path
    provider_org: ProviderOrgConfig
    trust: AdapterConfig
    provider: AdapterConfig
    schedule: ScheduleConfig = ScheduleConfig()
    retry: RetryConfig = RetryConfig()
    scores: ScoresConfig = ScoresConfig()
    risk: RiskConfig = RiskConfig()


class ReportsConfig(_Section):
    """Reporting choices: the ADSM switch and the governance phrase lists per protocol.

    ``phrases`` maps a treatment protocol name to the phrases counted in its session notes;
    ``protocol_problems`` limits a protocol to referrals whose ICD-10 presenting problem
    starts with one of its prefixes (a protocol not listed there applies to every referral).
    The defaults are examples for the demo; a service sets the lists its clinical audit uses.
    """

    #: use the anxiety-disorder-specific measures (unconfirmed values) in outcome reports
    adsm_enabled: bool = False
    phrases: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "depression": ["behavioural activation", "activity diary", "thought record"],
            "anxiety": ["exposure", "worry time", "avoidance"],
            "risk": ["risk reviewed"],
        }
    )
    protocol_problems: dict[str, list[str]] = Field(
        default_factory=lambda: {"depression": ["F32", "F33"], "anxiety": ["F40", "F41"]}
    )

    @field_validator("phrases")
    @classmethod
    def _phrases_are_words(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, phrases in value.items():
            if not name.strip() or not phrases:
                raise ValueError("every protocol needs a name and at least one phrase")
            if any(not any(ch.isalnum() for ch in phrase) for phrase in phrases):
                raise ValueError(f"protocol {name}: every phrase needs a letter or digit")
        return value

    @model_validator(mode="before")
    @classmethod
    def _own_phrases_drop_default_problems(cls, data: Any) -> Any:
        """Own phrase lists without ``protocol_problems`` apply to every referral."""
        if isinstance(data, dict) and "phrases" in data and "protocol_problems" not in data:
            return {**data, "protocol_problems": {}}
        return data

    @model_validator(mode="after")
    def _problems_name_protocols(self) -> ReportsConfig:
        for name, prefixes in self.protocol_problems.items():
            if name not in self.phrases:
                raise ValueError(f"protocol_problems names {name}, which has no phrases")
            bad = [p for p in prefixes if not p[:1].isalpha() or not p.replace(".", "").isalnum()]
            if bad or not prefixes:
                raise ValueError(f"protocol_problems.{name}: give ICD-10 prefixes like F41")
        return self


class ObservabilityConfig(_Section):
    """The daemon's ``/healthz`` and ``/metrics`` server and its alerts (docs/operations.md).

    The server has no authentication, so it listens on a loopback address only: anything
    else is refused here, and a scraper on another host goes through a proxy the trust
    controls. Alert destinations are secrets (a webhook URL usually embeds a token), so
    the file names the environment variables that hold them, never the values.
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    #: alert when a connection has been failing for this long (one alert per incident)
    failure_alert_minutes: float = Field(default=15, gt=0)
    alert_webhook_env: str | None = None
    #: the HTTP proxy the webhook goes through (the environment's proxy variables are ignored)
    alert_webhook_proxy_url: Annotated[str | None, AfterValidator(check_proxy_url)] = None
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_from: str | None = None
    smtp_to: list[str] = Field(default_factory=list)
    smtp_username_env: str | None = None
    smtp_password_env: str | None = None

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        if value == "localhost":
            return value
        try:
            loopback = ipaddress.ip_address(value).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError("must be a loopback address (127.0.0.1, ::1 or localhost)")
        return value

    @model_validator(mode="after")
    def _smtp_complete(self) -> ObservabilityConfig:
        if self.smtp_host and (not self.smtp_from or not self.smtp_to):
            raise ValueError("smtp_host needs smtp_from and at least one smtp_to address")
        return self


class SecurityConfig(_Section):
    """Encryption at rest and retention (docs/security.md).

    The keyring is read by reference only: ``encryption_key_env`` names an environment
    variable, ``encryption_key_file`` a file (mode 0600), holding one or more base64 AES-256
    keys; the first encrypts, every one decrypts, so keys rotate without a stop.
    Encryption is required unless the config says ``require_encryption = false``, which
    only a test store may (every connection a ``test_connection``); a config without a
    ``[security]`` section therefore needs a key (``ehr-bridge keys generate``).
    ``retention_days`` purges payloads of referrals closed and confirmed at the trust that
    long ago (None: keep them); hashes and the lineage stay. With it set, the daemon runs
    that purge itself every ``retention_interval_hours`` (one daemon at a time).
    """

    encryption_key_env: str | None = None
    encryption_key_file: str | None = None
    #: refuse to open the store without a key; ``false`` is for test stores only
    require_encryption: bool = True
    retention_days: int | None = Field(default=None, ge=1, le=36500)
    #: how often `ehr-bridge run` purges (payloads and kept files) when retention_days is set
    retention_interval_hours: float = Field(default=24, gt=0, le=8760)
    #: what the purge empties; the other types keep the outcome reports working
    purge_resource_types: list[str] = Field(
        default_factory=lambda: [
            "Patient",
            "DocumentReference",
            "QuestionnaireResponse",
            # risk Flags may carry the provider's shareable line; the risk_event row stays
            "Flag",
            "RiskAssessment",
            "DetectedIssue",
        ]
    )

    @model_validator(mode="before")
    @classmethod
    def _no_key_in_text(cls, data: Any) -> Any:
        """A key written into the file itself is refused with the fix, not a generic error."""
        if isinstance(data, dict) and "encryption_key" in data:
            raise ValueError(
                "keys are never written in the config; use encryption_key_env or "
                "encryption_key_file"
            )
        return data


class AppConfig(_Section):
    """The whole file, with relative paths resolved against the file's folder."""

    base_dir: Path = Path()
    database: DatabaseConfig = DatabaseConfig()
    logging: LoggingConfig = LoggingConfig()
    display: DisplayConfig = DisplayConfig()
    connection: list[ConnectionConfig] = Field(default_factory=list)
    reports: ReportsConfig = ReportsConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    security: SecurityConfig = SecurityConfig()

    @field_validator("connection")
    @classmethod
    def _unique_names(cls, value: list[ConnectionConfig]) -> list[ConnectionConfig]:
        names = [c.name for c in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"connection names must be unique: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _plain_text_for_test_stores_only(self) -> AppConfig:
        """``require_encryption = false`` on a store fed by a live connection is refused."""
        live = [c.name for c in self.connection if not c.test_connection]
        if not self.security.require_encryption and live:
            raise ConfigError(
                f"require_encryption = false is for test stores only, and connection "
                f"{live[0]} is live (no test_connection = true): configure a key "
                "(`ehr-bridge keys generate`, docs/security.md)",
                key="security.require_encryption",
            )
        return self

    def resolve(self, path: Path | str) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(path)
        return path if path.is_absolute() else self.base_dir / path

    def database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.resolve(url[len(prefix) :]))
        return url

    def get_connection(self, name: str) -> ConnectionConfig:
        """A connection by name, or a ConfigError listing the known ones."""
        for connection in self.connection:
            if connection.name == name:
                return connection
        known = ", ".join(c.name for c in self.connection) or "none configured"
        raise ConfigError(f"unknown connection (known: {known})", key="connection")


def _key_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _keys_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the section at ``loc`` (below ``model``) knows; empty if it is not a model."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if current is not None else None
        current = _model_in(field.annotation) if field is not None else None
        if current is None:
            return []
    assert current is not None
    return [name for name in current.model_fields if name != "base_dir"]


def unknown_key_message(name: str, known: list[str]) -> str:
    """The message for an unknown key: the closest known key, or the keys the section takes."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) or [
        k for k in known if len(name) >= 3 and (k.startswith(name) or name.startswith(k))
    ]
    hint = f"; did you mean {close[0]}?" if close else ""
    listed = f" (this section takes: {', '.join(known)})" if known and not close else ""
    return f"unknown key{hint}{listed}"


def explain_validation(exc: ValidationError, model: type[BaseModel]) -> tuple[str, str]:
    """``(key path, message)`` for the first problem pydantic found, said once.

    A misspelt key usually also leaves a required key missing; the unknown key comes
    first, since fixing it fixes both. The message never repeats the path.
    """
    errors = sorted(
        exc.errors(include_url=False, include_input=False),
        key=lambda e: e["type"] != "extra_forbidden",
    )
    first = errors[0]
    loc = tuple(first["loc"])
    if first["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
        message = unknown_key_message(loc[-1], _keys_at(model, loc[:-1]))
    else:
        message = _said(first)
    others = [f"{_key_path(tuple(e['loc']))}: {_said(e)}" for e in errors[1:4]]
    more = len(errors) - 1 - len(others)
    if others:
        message += "; also " + "; ".join(others) + (f" (and {more} more)" if more else "")
    return _key_path(loc), message


def _said(error: Any) -> str:
    """Pydantic's message without its "Value error, " prefix for our own checks."""
    return str(error["msg"]).removeprefix("Value error, ")


def validation_error(exc: ValidationError, model: type[BaseModel], key: str) -> ConfigError:
    """A ConfigError for options of ``model`` at config key ``key`` (adapters use this)."""
    where, message = explain_validation(exc, model)
    return ConfigError(message, key=f"{key}.{where}" if where else key)


def load_config(path: Path) -> AppConfig:
    """Read and validate a config file; every problem becomes a ConfigError naming its key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"config file not found: {path.absolute()}; name the file with --config FILE or"
            f" the EHR_BRIDGE_CONFIG environment variable (without either: ./{DEFAULT_CONFIG_NAME}"
            " in the current folder)"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})", key="--config") from exc
    raw["base_dir"] = path.resolve().parent
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as exc:
        key, message = explain_validation(exc, AppConfig)
        raise ConfigError(message, key=key) from None


def read_secret(options: dict[str, Any], name: str, *, base_dir: Path, key: str) -> Secret:
    """A secret named by ``<name>_env`` (environment variable) or ``<name>_file`` (a file)."""
    env_name = options.get(f"{name}_env")
    file_name = options.get(f"{name}_file")
    if name in options:
        raise ConfigError(
            f"secrets are never written in the config; use {name}_env or {name}_file",
            key=f"{key}.{name}",
        )
    if env_name:
        value = os.environ.get(str(env_name))
        if not value:
            raise ConfigError(
                f"environment variable {env_name} is not set", key=f"{key}.{name}_env"
            )
        return Secret(value)
    if file_name:
        secret_path = Path(str(file_name))
        secret_path = secret_path if secret_path.is_absolute() else base_dir / secret_path
        try:
            return Secret(secret_path.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ConfigError(
                f"cannot read secret file {secret_path}", key=f"{key}.{name}_file"
            ) from exc
    raise ConfigError(f"set {name}_env or {name}_file", key=f"{key}.{name}_env")
