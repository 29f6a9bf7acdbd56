"""What collect queues for the risks in a bundle: our Flag, its write-back, its follow-up.

A risk's write-back goes in the risk lane (``RISK_PRIORITY``): it depends on nothing (not
even its session's care contact) and every push claims it before any routine row. Each
risk also gets a ``risk_event`` row, followed until the trust acknowledges it. When the
trust adapter cannot take risk items at all, the row is still recorded without a
write-back, and the escalation pages for it at once: a risk is never dropped quietly.

A bundle refused whole that held a risk (a provider Flag, or a PHQ-9 answer the rules
fire on, read leniently from the raw bundle) gets a ``quarantine`` risk event, which
pages at once with the entry to fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ehr_bridge.domain.ids import artefact_key
from ehr_bridge.domain.measures import MEASURES
from ehr_bridge.domain.risk import (
    REFERRAL_EXTENSION,
    RISK_TYPES,
    ItemRule,
    RiskEvent,
    risk_events,
)
from ehr_bridge.domain.validate import SessionArtefacts
from ehr_bridge.store import RISK_PRIORITY, NewOutboxItem, NewRiskEvent, Store, utcnow
from ehr_bridge.sync.connection import Connection

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class BundleRisks:
    """A stored bundle's risks: Flags to store, write-backs to queue, events to follow."""

    flags: list[JsonDict] = field(default_factory=list)
    outbox: list[NewOutboxItem] = field(default_factory=list)
    events: list[NewRiskEvent] = field(default_factory=list)


def bundle_risks(conn: Connection, artefacts: SessionArtefacts) -> BundleRisks:
    """The risks a checked bundle raises under the connection's rules."""
    found = risk_events(
        artefacts.patient_id, artefacts.risks, artefacts.questionnaire_responses, conn.risk_rules
    )
    result = BundleRisks()
    writable = conn.writes("risk_alert")
    for event in found:
        key = artefact_key(conn.name, "risk_alert", event.id)
        result.flags.append(event.flag)
        if writable:
            result.outbox.append(_risk_item(key, artefacts.service_request_id, event))
        result.events.append(
            NewRiskEvent(
                id=key,
                referral_id=artefacts.service_request_id,
                outbox_key=key if writable else None,
                origin="session",
                level=event.level,
                reason=event.reason,
                raised_at=datetime.fromisoformat(event.raised_at),
            )
        )
    return result


def _risk_item(key: str, referral_id: str, event: RiskEvent) -> NewOutboxItem:
    return NewOutboxItem(
        key,
        referral_id,
        "risk_alert",
        "Flag",
        event.id,
        context=event.context(),
        priority=RISK_PRIORITY,
    )


def quarantined_risk(
    conn: Connection, store: Store, bundle: JsonDict, bundle_hash: str
) -> NewRiskEvent | None:
    """A risk event for a refused bundle that seems to hold a risk, else None.

    Read leniently: the bundle failed our checks, so anything shaped like a risk resource
    or a PHQ-9 answer a rule fires on counts. Better one page too many than a risk unseen.
    The referral is the first ServiceRequest any entry names, if it is this connection's
    (so the page can give the trust's referral id).
    """
    reason = _raw_risk_reason(conn, bundle)
    if reason is None:
        return None
    named = _raw_referral_id(bundle)
    owners = store.referral_owners([named]) if named else {}
    owner = owners.get(named or "")
    return NewRiskEvent(
        id=quarantined_risk_id(conn, bundle_hash),
        referral_id=named if owner is not None and owner.connection == conn.name else None,
        outbox_key=None,
        origin="quarantine",
        level="urgent",
        reason=reason,
        raised_at=utcnow(),
    )


def quarantined_risk_id(conn: Connection, bundle_hash: str) -> str:
    """The id of the risk event a refused bundle raised (one per bundle content)."""
    return artefact_key(conn.name, "risk_quarantine", bundle_hash)


_SERVICE_REQUEST = re.compile(r"(?:^|/)ServiceRequest/([A-Za-z0-9\-.]{1,64})$")


def _raw_referral_id(bundle: JsonDict) -> str | None:
    """The first ServiceRequest id a raw bundle's entries refer to, wherever they put it."""
    for entry in _entries(bundle):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        candidates: list[Any] = []
        for key in ("basedOn", "referralRequest"):
            value = resource.get(key)
            candidates += value if isinstance(value, list) else [value]
        context = resource.get("context")
        if isinstance(context, dict) and isinstance(context.get("related"), list):
            candidates += context["related"]
        extensions = resource.get("extension")
        for extension in extensions if isinstance(extensions, list) else []:
            if isinstance(extension, dict) and extension.get("url") == REFERRAL_EXTENSION:
                candidates.append(extension.get("valueReference"))
        for candidate in candidates:
            text = candidate.get("reference") if isinstance(candidate, dict) else None
            found = _SERVICE_REQUEST.search(text) if isinstance(text, str) else None
            if found:
                return found.group(1)
    return None


def _entries(bundle: JsonDict) -> list[Any]:
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    return entries if isinstance(entries, list) else []


def _raw_risk_reason(conn: Connection, bundle: JsonDict) -> str | None:
    for entry in _entries(bundle):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if kind in RISK_TYPES:
            return {"Flag": "provider_flag", "RiskAssessment": "risk_assessment"}.get(
                str(kind), "detected_issue"
            )
        rule = _raw_rule_fired(conn, resource) if kind == "QuestionnaireResponse" else None
        if rule is not None:
            return rule.reason
    return None


def _raw_rule_fired(conn: Connection, response: Any) -> ItemRule | None:
    """The first rule whose item, read without the usual checks, reaches its threshold."""
    items = response.get("item") if isinstance(response, dict) else None
    if not isinstance(items, list):
        return None
    for rule in conn.risk_rules:
        measure = MEASURES.get(rule.measure)
        if measure is None or response.get("questionnaire") != measure.questionnaire_url:
            continue
        for item in items:
            if not isinstance(item, dict) or item.get("linkId") != str(rule.item):
                continue
            for answer in item.get("answer") or []:
                value = answer.get("valueInteger") if isinstance(answer, dict) else None
                if isinstance(value, int) and value >= rule.at_least:
                    return rule
    return None
