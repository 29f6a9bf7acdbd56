"""Dry runs of a mapping: what one record would become, and what a change to it would change.

Nothing here touches a store, a network or a file: a preview maps the record, builds the
FHIR the pull flow would build (``build_referral_resources`` + ``referral_bundle``) or the
payload the push flow would send, and returns it. ``mapping preview``, ``mapping test`` and
``mapping diff`` are built on these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from ehr_bridge.domain.referral import ProviderRef, build_referral_resources, referral_bundle
from ehr_bridge.mapping.apply import Mapping
from ehr_bridge.mapping.schema import OUTBOUND_KINDS

JsonDict = dict[str, Any]

#: the provider golden FHIR files are written for (see mappings/iaptus.golden/README.md)
GOLDEN_PROVIDER = ProviderRef(code="IESO01", display="Online typed therapy provider")
GOLDEN_CONNECTION = "golden-trust"


@dataclass(frozen=True)
class Preview:
    """What a record maps to: ``referral`` facts and FHIR bundle, or an outbound payload."""

    kind: str  # "referral" or an outbound kind
    output: JsonDict  # the FHIR bundle (referral) or the payload (outbound)
    facts: JsonDict | None = None  # ReferralFacts as JSON, for referrals


def outbound_kind(document: Any) -> str | None:
    """The kind of an outbound golden input ``{"kind", "resource", "context"}``, else None."""
    if (
        isinstance(document, dict)
        and document.get("kind") in OUTBOUND_KINDS
        and "context" in document
    ):
        return str(document["kind"])
    return None


def preview(
    mapping: Mapping,
    document: Any,
    *,
    connection: str = GOLDEN_CONNECTION,
    provider: ProviderRef = GOLDEN_PROVIDER,
    today: date | None = None,
) -> Preview:
    """Map one document as the engine would, with no side effects.

    Raises:
        MappingError: a rule failed (the record would be quarantined or dead-lettered).
        RecordValidationError: the facts break a referral rule (quarantined at pull).
        ConfigError: an outbound kind the mapping has no rules for.
    """
    kind = outbound_kind(document)
    if kind is not None:
        payload = mapping.outbound(kind, document.get("resource") or {}, document["context"])
        return Preview(kind, payload)
    facts = mapping.referral_facts(document if isinstance(document, dict) else {})
    # sample records use test NHS numbers (9xx): a preview stores nothing and goes nowhere
    resources = build_referral_resources(
        connection, provider, facts, today=today, allow_test_range=True
    )
    return Preview("referral", referral_bundle(resources), facts.model_dump(mode="json"))


@dataclass(frozen=True)
class Change:
    """One difference between two JSON documents, at a dotted path (``entry[1].resource.x``)."""

    path: str
    kind: str  # added | removed | changed
    old: Any = None
    new: Any = None


def changes(old: Any, new: Any, path: str = "") -> list[Change]:
    """Every leaf-level difference between two JSON documents, in document order."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[Change] = []
        for key in [*old, *(k for k in new if k not in old)]:
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                found.append(Change(where, "removed", old=old[key]))
            elif key not in old:
                found.append(Change(where, "added", new=new[key]))
            else:
                found.extend(changes(old[key], new[key], where))
        return found
    if isinstance(old, list) and isinstance(new, list):
        found = []
        for index in range(max(len(old), len(new))):
            where = f"{path}[{index}]"
            if index >= len(new):
                found.append(Change(where, "removed", old=old[index]))
            elif index >= len(old):
                found.append(Change(where, "added", new=new[index]))
            else:
                found.extend(changes(old[index], new[index], where))
        return found
    return [] if old == new and type(old) is type(new) else [Change(path, "changed", old, new)]
