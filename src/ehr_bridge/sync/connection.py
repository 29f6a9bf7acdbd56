"""A connection at run time: its mapping and adapters, built and validated at start-up."""

from __future__ import annotations

import difflib
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ehr_bridge.adapters.base import ProviderPort, TrustSource, TrustWriter
from ehr_bridge.adapters.registry import ALL_WRITES, capabilities_of, create_adapter, spec_for
from ehr_bridge.config import AppConfig, ConnectionConfig
from ehr_bridge.domain.measures import MEASURES
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.domain.risk import DEFAULT_RULES, ItemRule, check_rules
from ehr_bridge.errors import ConfigError
from ehr_bridge.mapping import Mapping, load_mapping
from ehr_bridge.mapping.check import check_mapping
from ehr_bridge.mapping.shipped import shipped_mapping, shipped_names
from ehr_bridge.retry import RetryPolicy


def worker_id() -> str:
    """Who holds a lease: host and process, so an operator can tell daemons apart."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_alive(pid: int) -> bool:
    """True if a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Connection:
    """Everything a flow needs to move one connection's data."""

    name: str
    mapping: Mapping
    source: TrustSource
    writer: TrustWriter
    provider: ProviderPort
    provider_ref: ProviderRef
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    lease_seconds: float = 120.0
    #: most write-backs at the trust at once ([connection.schedule] push_concurrency)
    push_concurrency: int = 8
    #: longest one flow run may take ([connection.schedule] flow_deadline_seconds)
    flow_deadline_seconds: float = 300.0
    #: most pages one pull run follows ([connection.schedule] max_pull_pages)
    max_pull_pages: int = 10_000
    owner: str = field(default_factory=worker_id)
    #: what the trust adapter can do (its spec's, and what its mapping gives it:
    #: ``registry.capabilities_of``); write:<kind> decides what is queued
    capabilities: frozenset[str] = ALL_WRITES | {"find_by_reference", "updated_since"}
    #: a test connection: 999-range test NHS numbers are accepted ([[connection]] test_connection)
    test_connection: bool = False
    #: CHI / H&C numbers: "quarantine" or "local_id" ([[connection]] other_uk_numbers)
    other_uk_numbers: Literal["quarantine", "local_id"] = "quarantine"
    #: measures whose totals may be written back without items ([connection.scores])
    itemless_totals: frozenset[str] = frozenset()
    #: the anxiety-disorder-specific measures are in use ([reports] adsm_enabled)
    adsm_enabled: bool = False
    #: rules over questionnaire items that raise a risk ([connection.risk] rules)
    risk_rules: tuple[ItemRule, ...] = DEFAULT_RULES
    #: the risk lane's own writer (a second adapter instance): never shared with push
    risk_writer: TrustWriter | None = None
    #: how soon the trust must acknowledge a risk, and how often to page until it does
    risk_acknowledge_minutes: float = 60.0
    risk_repeat_minutes: float = 30.0
    #: serialises this connection's flows when the daemon runs them from several threads
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: held by whichever collect runs (the routine flow or the risk lane's): one at a time
    collect_lock: threading.Lock = field(default_factory=threading.Lock)

    def writes(self, kind: str) -> bool:
        """True if the trust adapter takes items of this kind and the mapping can build them.

        Items of other kinds are never queued. A mapping may leave out a kind its adapter
        takes (``risk_alert`` in a mapping written before risks were written back): such
        items would only be dead-lettered at push, so they are not queued at all.
        """
        return f"write:{kind}" in self.capabilities and kind in self.mapping.outbound_kinds()


def build_connection(app: AppConfig, index: int, config: ConnectionConfig) -> Connection:
    """Load the mapping and create both adapters; any problem is a ConfigError with its key."""
    key = f"connection[{index}]"
    mapping = load_mapping(mapping_file(app, config, f"{key}.mapping"))
    _check_write_back_codes(mapping, adsm_enabled=app.reports.adsm_enabled)
    code = config.provider_org.code
    trust = create_adapter(
        "trust",
        config.trust,
        base_dir=app.base_dir,
        key=f"{key}.trust",
        provider_code=code,
        mapping=mapping,
    )
    provider = create_adapter(
        "provider",
        config.provider,
        base_dir=app.base_dir,
        key=f"{key}.provider",
        provider_code=code,
    )
    _check_measure_keys(config.scores.itemless_totals, f"{key}.scores.itemless_totals")
    rules = _risk_rules(config, f"{key}.risk.rules")
    risk_writer = create_adapter(
        "trust",
        config.trust,
        base_dir=app.base_dir,
        key=f"{key}.trust",
        provider_code=code,
        mapping=mapping,
    )
    _require(trust, (TrustSource, TrustWriter), f"{key}.trust")
    _require(provider, (ProviderPort,), f"{key}.provider")
    org = config.provider_org
    return Connection(
        name=config.name,
        mapping=mapping,
        source=trust,
        writer=trust,
        provider=provider,
        provider_ref=ProviderRef(code=org.code, display=org.display, ods_code=org.ods_code),
        retry=RetryPolicy(
            max_attempts=config.retry.max_attempts,
            base_delay=config.retry.base_delay_seconds,
            max_delay=config.retry.max_delay_seconds,
        ),
        lease_seconds=config.retry.lease_seconds,
        push_concurrency=config.schedule.push_concurrency,
        flow_deadline_seconds=config.schedule.flow_deadline_seconds,
        max_pull_pages=config.schedule.max_pull_pages,
        capabilities=capabilities_of(
            spec_for(config.trust.adapter, "trust", f"{key}.trust"), trust
        ),
        test_connection=config.test_connection,
        other_uk_numbers=config.other_uk_numbers,
        itemless_totals=frozenset(config.scores.itemless_totals),
        adsm_enabled=app.reports.adsm_enabled,
        risk_rules=rules,
        risk_writer=risk_writer,
        risk_acknowledge_minutes=config.risk.acknowledge_within_minutes,
        risk_repeat_minutes=config.risk.repeat_alert_minutes,
    )


def _risk_rules(config: ConnectionConfig, key: str) -> tuple[ItemRule, ...]:
    """The connection's risk rules, each checked: a typo must never silently raise nothing."""
    if config.risk.rules is None:
        return DEFAULT_RULES
    rules = []
    for index, rule in enumerate(config.risk.rules):
        concept = None
        if rule.snomed_code is not None:
            concept = (rule.snomed_code, rule.snomed_display or "")
        item = ItemRule(rule.measure, rule.item, rule.at_least, rule.level, concept)
        try:
            check_rules([item])
        except ValueError as exc:
            raise ConfigError(str(exc), key=f"{key}[{index}]") from exc
        rules.append(item)
    return tuple(rules)


def mapping_file(app: AppConfig, config: ConnectionConfig, key: str) -> Path:
    """The connection's mapping file: a path from the config's folder, or a shipped name.

    ``mapping = "iaptus"`` (no folder, no suffix) that is not a file beside the config is
    the mapping shipped with ehr-bridge (``mapping.shipped``).
    """
    path = app.resolve(config.mapping)
    if path.is_file():
        return path
    shipped = shipped_mapping(str(config.mapping))
    if shipped is not None:
        return shipped
    names = shipped_names()
    close = difflib.get_close_matches(Path(config.mapping).stem, names, n=1)
    hint = f"; did you mean the shipped mapping {close[0]!r}?" if close else ""
    raise ConfigError(
        f"mapping file not found: {path}{hint} (a bare name picks a shipped mapping:"
        f" {', '.join(names)})",
        key=key,
    )


def _check_write_back_codes(mapping: Mapping, *, adsm_enabled: bool) -> None:
    """A code map that misses one of our codes would dead-letter those write-backs mid-run.

    The same errors ``ehr-bridge mapping check`` reports, refused at start-up instead.
    """
    errors = [f for f in check_mapping(mapping, adsm_enabled=adsm_enabled) if f.level == "error"]
    if errors:
        raise ConfigError(errors[0].message, key=errors[0].key)


def _check_measure_keys(keys: list[str], key: str) -> None:
    """Every name must be a measure of the catalogue: a typo would silently allow nothing."""
    unknown = sorted(set(keys) - set(MEASURES))
    if unknown:
        known = ", ".join(sorted(MEASURES))
        raise ConfigError(f"unknown measure {unknown[0]!r} (known: {known})", key=key)


def _require(adapter: object, protocols: tuple[type, ...], key: str) -> None:
    for protocol in protocols:
        if not isinstance(adapter, protocol):
            raise ConfigError(f"adapter does not implement {protocol.__name__}", key=key)


def build_connections(app: AppConfig, only: str | None = None) -> list[Connection]:
    """Every enabled connection (or just ``only``), validated before any job runs."""
    if only is not None:
        app.get_connection(only)
    return [
        build_connection(app, i, c)
        for i, c in enumerate(app.connection)
        if c.enabled and (only is None or c.name == only)
    ]
