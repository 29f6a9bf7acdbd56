"""Adapters by name: built-ins, third-party entry points, and explicit ``register``.

Each adapter is described once by an ``AdapterSpec``: its name, the sides it can serve, a
lazy ``module:callable`` factory and the capabilities it has (read once by the engine and
by the contract test suite, never scattered as skips). Capabilities that depend on what
the connection's mapping declares (the ``rest`` adapter reads back only where its ``api:``
section gives read endpoints) are listed apart, as ``mapping_capabilities``; the built
adapter reports which of them it has, and ``capabilities_of`` gives the connection's set.
A third-party package registers a spec in the entry-point group ``ehr_bridge.adapters``::

    [project.entry-points."ehr_bridge.adapters"]
    mysystem = "my_package.adapter:SPEC"

A factory takes the adapter's options from the config and returns an object satisfying the
role's protocols; it validates the options, so a wrong option fails at start-up. An unknown
name is answered with "did you mean" and the fix.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, Protocol

from ehr_bridge.adapters.base import ReportsCapabilities
from ehr_bridge.config import AdapterConfig, unknown_key_message
from ehr_bridge.errors import ConfigError

log = logging.getLogger(__name__)

Role = Literal["trust", "provider"]
ENTRY_POINT_GROUP = "ehr_bridge.adapters"

#: capability names adapters may declare (the contract suite knows each one)
WRITE_KINDS = ("care_contact", "clinical_note", "assessment", "referral_status", "risk_alert")
CAPABILITIES = frozenset(
    {
        "find_by_reference",  # TrustWriter.find answers by client reference (read before write)
        "updated_since",  # TrustSource honours updated_since (else it re-reads and hashes)
        *(f"write:{kind}" for kind in WRITE_KINDS),  # the item kinds a TrustWriter takes
        "read_items",  # TrustReader.list_items reads written items back (reconcile)
        "fetch_referral",  # TrustReader.fetch_referral gets one referral (quarantine retry)
        "update_items",  # TrustUpdater.update overwrites an item (reconcile --force)
        "read_acknowledgement",  # RiskAcknowledger.acknowledgement reads a risk alert's ack
    }
)
#: what the support commands need from a trust adapter (optional, see adapters/base.py)
SUPPORT_CAPABILITIES = frozenset({"read_items", "fetch_referral", "update_items"})
ALL_WRITES = frozenset(f"write:{kind}" for kind in WRITE_KINDS)


class AdapterFactory(Protocol):
    """What a registered factory looks like."""

    def __call__(
        self, options: dict[str, Any], *, base_dir: Path, key: str, provider_code: str
    ) -> Any:
        """Build the adapter."""
        ...


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter, described once."""

    name: str
    roles: frozenset[str]
    factory: str  # "module:callable"
    capabilities: frozenset[str] = field(default_factory=frozenset)
    description: str = ""
    origin: str = "built-in"
    #: capabilities it has only when its mapping (or options) say so; the built adapter
    #: reports which (``ReportsCapabilities``), see ``capabilities_of``
    mapping_capabilities: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        unknown = (self.capabilities | self.mapping_capabilities) - CAPABILITIES
        if unknown:
            raise ConfigError(
                f"adapter {self.name!r} declares unknown capability {sorted(unknown)[0]!r}"
            )
        both = self.capabilities & self.mapping_capabilities
        if both:
            raise ConfigError(
                f"adapter {self.name!r} declares {sorted(both)[0]!r} both always and by mapping"
            )


BUILTIN: tuple[AdapterSpec, ...] = (
    AdapterSpec(
        name="iaptus",
        roles=frozenset({"trust"}),
        factory="ehr_bridge.adapters.iaptus:create",
        capabilities=frozenset({"find_by_reference", "updated_since", "read_acknowledgement"})
        | ALL_WRITES
        | SUPPORT_CAPABILITIES,
        description="IAPTUS-style REST API (docs/trust-api.md)",
    ),
    AdapterSpec(
        name="hl7v2",
        roles=frozenset({"trust"}),
        factory="ehr_bridge.adapters.hl7v2:create",
        capabilities=frozenset(
            {"updated_since", "write:assessment", "write:clinical_note", "write:risk_alert"}
        ),
        description="HL7 v2: REF^I12 in from a drop folder or MLLP; ORU^R01, MDM^T02 out",
    ),
    AdapterSpec(
        name="rest",
        roles=frozenset({"trust"}),
        factory="ehr_bridge.adapters.rest:create",
        capabilities=frozenset({"find_by_reference", "updated_since"}) | ALL_WRITES,
        mapping_capabilities=SUPPORT_CAPABILITIES,
        description="any JSON REST API described by the mapping's api: section",
    ),
    AdapterSpec(
        name="fhir",
        roles=frozenset({"trust"}),
        factory="ehr_bridge.adapters.fhir:create_trust",
        capabilities=frozenset({"find_by_reference", "updated_since", "read_acknowledgement"})
        | ALL_WRITES,
        description="FHIR R4 server: ServiceRequest search in, transaction Bundles out",
    ),
    AdapterSpec(
        name="fhir-provider",
        roles=frozenset({"provider"}),
        factory="ehr_bridge.adapters.fhir:create_provider",
        description="therapy platform on a FHIR R4 server: referrals PUT, session Bundles searched",
    ),
    AdapterSpec(
        name="folder",
        roles=frozenset({"provider"}),
        factory="ehr_bridge.adapters.registry:create_folder",
        description="FHIR bundles in a folder shared with the provider's platform",
    ),
)

_registered: dict[str, AdapterSpec] = {}


def register(spec: AdapterSpec) -> None:
    """Add an adapter at run time (tests, embedding applications)."""
    _registered[spec.name] = spec


def unregister(name: str) -> None:
    """Remove an adapter added with ``register``."""
    _registered.pop(name, None)


def _from_entry_points() -> dict[str, AdapterSpec]:
    found: dict[str, AdapterSpec] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = entry.load()
        except Exception as exc:  # a broken plug-in must not stop the built-ins
            log.warning(
                "adapter plug-in failed to load",
                extra={"entry_point": entry.name, "error": type(exc).__name__},
            )
            continue
        if isinstance(spec, AdapterSpec):
            found[spec.name] = AdapterSpec(
                **{**spec.__dict__, "origin": f"entry point {entry.value}"}
            )
    return found


def specs() -> dict[str, AdapterSpec]:
    """Every adapter by name: built-ins, then entry points, then explicit registrations."""
    merged = {spec.name: spec for spec in BUILTIN}
    merged.update(_from_entry_points())
    merged.update(_registered)
    return merged


def available() -> list[AdapterSpec]:
    """Every registered adapter, sorted by name."""
    return sorted(specs().values(), key=lambda s: s.name)


def spec_for(name: str, role: Role, key: str) -> AdapterSpec:
    """The spec an adapter name refers to, or a ConfigError with the fix."""
    known = specs()
    spec = known.get(name)
    if spec is None:
        raise ConfigError(_unknown(name, role, known), key=f"{key}.adapter")
    if role not in spec.roles:
        serves = ", ".join(sorted(spec.roles))
        raise ConfigError(
            f"adapter {name!r} cannot be used as {role} (it serves {serves})", key=f"{key}.adapter"
        )
    return spec


def capabilities_of(spec: AdapterSpec, adapter: object) -> frozenset[str]:
    """What one built adapter can do: a connection's capabilities.

    Its spec's ``capabilities``, plus those of the spec's ``mapping_capabilities`` that the
    adapter reports having (``ReportsCapabilities``); never anything beyond the two.
    """
    reported = adapter.capabilities if isinstance(adapter, ReportsCapabilities) else frozenset()
    return spec.capabilities | (spec.mapping_capabilities & frozenset(reported))


def create_adapter(
    role: Role,
    config: AdapterConfig,
    *,
    base_dir: Path,
    key: str,
    provider_code: str,
    mapping: Any = None,
) -> Any:
    """Build the adapter a connection's config names for ``role``.

    Factories that take a ``mapping`` keyword (adapters driven by the mapping's ``api:``
    section) get the connection's loaded mapping, so the file is named once in the config.
    """
    spec = spec_for(config.adapter, role, key)
    factory = _load(spec.factory)
    extra: dict[str, Any] = {}
    if mapping is not None and "mapping" in inspect.signature(factory).parameters:
        extra["mapping"] = mapping
    return factory(
        config.options(), base_dir=base_dir, key=key, provider_code=provider_code, **extra
    )


def _unknown(name: str, role: str, known: dict[str, AdapterSpec]) -> str:
    names = sorted(n for n, spec in known.items() if role in spec.roles)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown adapter {name!r}; {hint}set adapter to one of: {', '.join(names)}"


def _load(target: str) -> AdapterFactory:
    module_name, _, attribute = target.partition(":")
    factory: AdapterFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


def create_folder(options: dict[str, Any], *, base_dir: Path, key: str, provider_code: str) -> Any:
    """The ``folder`` provider: ``path`` (relative to the config file) is the shared folder."""
    from ehr_bridge.adapters.folder import FolderProvider

    unknown = sorted(set(options) - {"path", "max_file_bytes"})
    if unknown:
        message = unknown_key_message(unknown[0], ["adapter", "path", "max_file_bytes"])
        raise ConfigError(message, key=f"{key}.{unknown[0]}")
    path = options.get("path")
    if not isinstance(path, str) or not path:
        raise ConfigError("set path to the folder shared with the provider", key=f"{key}.path")
    root = Path(path) if Path(path).is_absolute() else base_dir / path
    max_bytes = options.get("max_file_bytes", 5 * 1024 * 1024)
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ConfigError("must be a positive whole number", key=f"{key}.max_file_bytes")
    return FolderProvider(root, max_file_bytes=max_bytes)
