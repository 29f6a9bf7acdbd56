"""`referrals show`: the whole story of one referral, from the history the store keeps.

Sections (JSON keys) and one merged timeline for people: trust record versions pulled,
FHIR resources made, deliveries (with the earlier episodes each carried), every write-back
and each attempt at it (outcome, time, the trust's id), quarantine entries, patient
identity events and operator actions. Only ids, hashes, codes and field names appear.

Every write-back names the therapy session it belongs to: a care contact's own Encounter,
a note's or score's Encounter (its ``encounter`` reference, else the care contact it waits
for), with the session's start and the provider's therapist as the Encounter names them
(a staff id or display name, never patient data). Tables print times in the display zone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from typing import Any

from rich.console import Console

from ehr_bridge.cli import tables
from ehr_bridge.cli.context import print_table
from ehr_bridge.cli.risk import risk_state
from ehr_bridge.cli.screen import as_datetime, when, zone_label
from ehr_bridge.cli.support import say as say_to
from ehr_bridge.cli.support import short
from ehr_bridge.cli.text import markup_safe
from ehr_bridge.store import OutboxRow, ReferralRow, RiskView, Store
from ehr_bridge.sync.deliver import earlier_referrals
from ehr_bridge.sync.score_items import ref_id

JsonDict = dict[str, Any]


def lineage(store: Store, row: ReferralRow) -> JsonDict:
    """Everything known about one referral, JSON-ready."""
    outbox = store.outbox_rows(referral_id=row.id)
    sessions = Sessions(store, outbox)
    data: JsonDict = {
        "id": row.id,
        "connection": row.connection,
        "trust_referral_id": row.trust_referral_id,
        "status": row.status,
        "patient_id": row.patient_id,
        "natural_patient_id": row.natural_patient_id or row.patient_id,
        "source_version": row.source_version,
        "first_pulled_at": row.first_pulled_at,
        "last_pulled_at": row.last_pulled_at,
        "delivered_at": row.delivered_at,
        "outbox": _states(outbox),
        "resources": [
            f"{r['resourceType']}/{r['id']}" for r in store.resources_for_referral(row.id)
        ],
        "versions": [_version(v) for v in store.referral_versions(row.id)],
        "deliveries": [_delivery(d) for d in store.deliveries(row.id)],
        "prior_episodes": prior_episodes(store, row),
        "write_backs": [_write_back(store, o, sessions) for o in outbox],
        "quarantine": [
            _quarantine(q) for q in store.quarantine_for(row.connection, row.trust_referral_id)
        ],
        "identity": _identity(store, row),
        "risks": [_risk(v) for v in store.risks(row.connection, referral_id=row.id)],
        "audit": [_audit(a) for a in store.audit_events(referral_id=row.id)],
    }
    data["timeline"] = timeline(data)
    return data


def _risk(view: RiskView) -> JsonDict:
    return {
        "id": view.id,
        "level": view.level,
        "reason": view.reason,
        "state": risk_state(view),
        "raised_at": view.raised_at,
        "delivered_at": view.delivered_at,
        "acknowledged_at": view.acknowledged_at,
        "alerts_sent": view.alerts_sent,
    }


def _states(rows: list[OutboxRow]) -> dict[str, int]:
    states: dict[str, int] = {}
    for item in rows:
        states[item.state] = states.get(item.state, 0) + 1
    return states


def _version(v: Any) -> JsonDict:
    return {
        "version": v.source_version,
        "source_hash": v.source_hash,
        "fhir_hash": v.fhir_hash,
        "patient_id": v.patient_id,
        "status": v.status,
        "pulled_at": v.pulled_at,
        "echo": v.echo,
    }


def _delivery(d: Any) -> JsonDict:
    episodes: list[str] = json.loads(d.episodes)
    return {
        "delivered_at": d.delivered_at,
        "fhir_hash": d.fhir_hash,
        "patient_id": d.patient_id,
        "episodes": episodes,
    }


def prior_episodes(store: Store, row: ReferralRow) -> list[JsonDict]:
    """The patient's earlier referrals: the episodes a delivery carries to the provider."""
    return [
        {
            "referral_id": other.id,
            "trust_referral_id": other.trust_referral_id,
            "status": other.status,
            "received": request.get("authoredOn"),
        }
        for other, request in earlier_referrals(store, row)
    ]


class Sessions:
    """The session each write-back belongs to, each resource read once (they are sealed)."""

    def __init__(self, store: Store, rows: list[OutboxRow]) -> None:
        self._store = store
        self._by_key = {r.id: r for r in rows}
        self._read: dict[tuple[str, str], JsonDict | None] = {}

    def of(self, row: OutboxRow) -> JsonDict:
        """``session_date`` (the Encounter's start), ``encounter`` and ``therapist``.

        A note or score with no Encounter gives its own time (``effectiveDateTime``,
        ``date``, ``authored``) and no encounter; a status change gives none.
        """
        resource = self._resource(row.resource_type, row.resource_id)
        encounter_id = self._encounter_id(row, resource)
        encounter = self._resource("Encounter", encounter_id) if encounter_id else None
        start = (encounter or {}).get("period", {}).get("start") if encounter else None
        return {
            "session_date": start or _own_time(resource),
            "encounter": f"Encounter/{encounter_id}" if encounter_id else None,
            "therapist": therapist(encounter),
        }

    def _encounter_id(self, row: OutboxRow, resource: JsonDict | None) -> str | None:
        if row.resource_type == "Encounter":
            return row.resource_id
        reference = (resource or {}).get("encounter") or (resource or {}).get("context", {}).get(
            "encounter"
        )
        if isinstance(reference, list):
            reference = reference[0] if reference else None
        found = ref_id(reference)
        if found:
            return found
        contact = self._by_key.get(row.depends_on or "")
        return contact.resource_id if contact and contact.resource_type == "Encounter" else None

    def _resource(self, kind: str, resource_id: str) -> JsonDict | None:
        if (kind, resource_id) not in self._read:
            self._read[kind, resource_id] = self._store.resource(kind, resource_id)
        return self._read[kind, resource_id]


def therapist(encounter: JsonDict | None) -> str | None:
    """The provider's therapist on an Encounter: the staff id it references, else its display."""
    for participant in (encounter or {}).get("participant") or []:
        individual = participant.get("individual") if isinstance(participant, dict) else None
        if not isinstance(individual, dict):
            continue
        staff = ref_id(individual) or (individual.get("identifier") or {}).get("value")
        named = staff or individual.get("display")
        if isinstance(named, str) and named:
            return named
    return None


def _own_time(resource: JsonDict | None) -> str | None:
    for key in ("effectiveDateTime", "date", "authored"):
        value = (resource or {}).get(key)
        if isinstance(value, str):
            return value
    return None


def _write_back(store: Store, o: OutboxRow, sessions: Sessions) -> JsonDict:
    return {
        "id": o.id,
        "kind": o.kind,
        **sessions.of(o),
        "resource": f"{o.resource_type}/{o.resource_id}",
        "state": o.state,
        "attempts": o.attempts,
        "trust_id": o.trust_id,
        "next_attempt_at": o.next_attempt_at,
        "last_error": o.last_error,
        "done_at": o.done_at,
        "history": [
            {
                "at": a.at,
                "outcome": a.outcome,
                "trust_id": a.trust_id,
                "error_code": a.error_code,
                "worker": a.worker,
            }
            for a in store.write_attempts(outbox_key=o.id)
        ],
    }


def _quarantine(q: Any) -> JsonDict:
    return {
        "id": q.id,
        "state": q.state,
        "code": q.code,
        "field": q.field,
        "reason": q.reason,
        "created_at": q.created_at,
        "closed_at": q.closed_at,
    }


def _identity(store: Store, row: ReferralRow) -> list[JsonDict]:
    ids = {row.patient_id, row.natural_patient_id or row.patient_id}
    events = {
        e.id: e
        for pid in ids
        for e in store.patient_history(pid)
        if e.referral_id in (row.id, None)  # this referral's, or an operator's link
    }
    return [
        {
            "at": e.created_at,
            "kind": e.kind,
            "patient_id": e.patient_id,
            "other_patient_id": e.other_patient_id,
            "reason": e.reason,
            "actor": e.actor,
            "referral_id": e.referral_id,
        }
        for _, e in sorted(events.items())
    ]


def _audit(a: Any) -> JsonDict:
    return {
        "at": a.at,
        "actor": a.actor,
        "action": a.action,
        "reason": a.reason,
        "outcome": a.outcome,
        "trust_id": a.trust_id,
        "outbox_key": a.outbox_key,
        "detail": json.loads(a.detail),
    }


def timeline(data: JsonDict) -> list[JsonDict]:
    """Every event of the sections above, oldest first, as (at, event, detail)."""
    events = [
        _event(v["pulled_at"], f"pulled version {v['version'] or '?'}", _pulled(v))
        for v in data["versions"]
    ]
    for q in data["quarantine"]:
        events.append(_event(q["created_at"], "quarantined", f"{q['field'] or '-'}: {q['reason']}"))
        if q["closed_at"]:
            events.append(_event(q["closed_at"], f"quarantine {q['state']}", f"entry {q['id']}"))
    events += [_delivered(d) for d in data["deliveries"]]
    events += [_attempt(w, a) for w in data["write_backs"] for a in w["history"]]
    events += [_event(i["at"], f"patient {i['kind']}", i["reason"]) for i in data["identity"]]
    events += [_action(a) for a in data["audit"] if a["action"].split(".")[0] in OPERATOR_NOUNS]
    return sorted(events, key=lambda e: e["at"])


#: audit actions that are operator actions (trust writes and identity events have sections)
OPERATOR_NOUNS = frozenset({"outbox", "quarantine", "reconcile", "patient"})


def _pulled(v: JsonDict) -> str:
    echo = " (our own write-back coming back: not delivered again)" if v.get("echo") else ""
    return f"hash {v['source_hash'][:12]}, patient {short(v['patient_id'])}, {v['status']}{echo}"


def _delivered(d: JsonDict) -> JsonDict:
    episodes = f", with {len(d['episodes'])} earlier episode(s)" if d["episodes"] else ""
    detail = f"patient {short(d['patient_id'])}{episodes}"
    return _event(d["delivered_at"], "delivered to the provider", detail)


def _attempt(write_back: JsonDict, attempt: JsonDict) -> JsonDict:
    detail = f"{short(write_back['id'])}: trust {attempt['trust_id'] or '-'}"
    if attempt["error_code"]:
        detail += f", {attempt['error_code']}"
    return _event(attempt["at"], f"{write_back['kind']} {attempt['outcome']}", detail)


def _action(a: JsonDict) -> JsonDict:
    """An operator action (trust writes are already in the write history)."""
    return _event(
        a["at"], a["action"], f"by {a['actor']}: {a['reason'] or '-'} ({a['outcome'] or 'done'})"
    )


def _event(at: datetime, event: str, detail: str) -> JsonDict:
    return {"at": at, "event": event, "detail": detail}


def print_lineage(console: Console, data: JsonDict) -> None:
    """The story for people: header, timeline, write-backs, earlier episodes."""
    say = partial(say_to, console)
    where = f"trust {markup_safe(data['trust_referral_id'])}, {data['connection']}"
    say(f"[bold]referral {data['id']}[/bold] ({where})")
    say(f"  status {data['status']}; patient {data['patient_id']}")
    if data["natural_patient_id"] != data["patient_id"]:
        say(
            f"  the trust record names patient {data['natural_patient_id']} (linked by an operator)"
        )
    delivered = when(console, data["delivered_at"]) or "not yet"
    say(
        f"  FHIR: {len(data['resources'])} resources; delivered {delivered} ({zone_label(console)})"
    )
    for risk in data["risks"]:
        say(
            f"  [bold]RISK[/bold] {short(risk['id'])} {risk['level']} ({risk['reason']}):"
            f" {risk['state']}, raised {when(console, risk['raised_at'])}"
        )
    rows = [[when(console, e["at"]), e["event"], e["detail"]] for e in data["timeline"]]
    print_table(console, f"  timeline ({zone_label(console)})", TIMELINE_COLUMNS, rows, indent=2)
    write_backs = [
        [
            short(w["id"]),
            w["kind"],
            when(console, w["session_date"]),
            w["state"],
            w["trust_id"],
            w["therapist"],
            w["attempts"],
            w["last_error"],
        ]
        for w in sorted(data["write_backs"], key=_by_session)
    ]
    title = f"  write-backs ({len(write_backs)}; session: when the therapy session began)"
    print_table(console, title, WRITE_BACK_COLUMNS, write_backs, indent=2)
    if data["prior_episodes"]:
        earlier = ", ".join(
            f"{markup_safe(p['trust_referral_id'])} ({p['status']})" for p in data["prior_episodes"]
        )
        say(f"  earlier episodes of this patient: {earlier}")


def _by_session(write_back: JsonDict) -> tuple[bool, datetime, str]:
    """Write-backs in session order (status changes, which have none, first), then kind."""
    start = as_datetime(write_back["session_date"])
    return start is not None, start or datetime.min.replace(tzinfo=UTC), write_back["kind"]


TIMELINE_COLUMNS: list[str | tables.Column] = ["when", "event", tables.text("detail", 4)]
#: the key, kind, session, state and the trust's id always; at 80 columns the error goes
#: last, after the attempts and the therapist
WRITE_BACK_COLUMNS: list[str | tables.Column] = [
    "key",
    "kind",
    "session",
    "state",
    "trust id",
    tables.optional("therapist", 2),
    tables.Column("attempts", drop=3, justify="right"),
    tables.text("last error", 3, drop=1, min_width=24),
]
