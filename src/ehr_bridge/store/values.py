"""The values the store's transactions take and give: plain data, below every store module.

``store.py``, ``pull_batch.py`` and ``submissions.py`` all speak these types; keeping them in
a module of their own lets each of those import them without importing the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class PulledReferral:
    """A mapped and validated trust referral, ready to upsert."""

    trust_referral_id: str
    source_hash: str
    source_version: str | None
    status: str
    patient_local_id: str
    nhs_number: str | None
    patient: JsonDict
    service_request: JsonDict
    #: the patient the trust record names, when operator links make ``patient`` another
    natural_patient_id: str | None = None
    #: hash of ``patient`` and ``service_request`` as built (see ``Stored.meaning_hash``)
    meaning_hash: str | None = None
    #: the change only reflects our own write-back: versioned, not delivered again
    echo: bool = False


@dataclass(frozen=True)
class Restamp:
    """A trust record that changed in form only (a resend): no new version, no delivery.

    Its raw hash and version marker are remembered so the same bytes are skipped next time.
    """

    trust_referral_id: str
    source_hash: str
    source_version: str | None


@dataclass(frozen=True)
class Stored:
    """What the ledger holds for one trust referral, as a pull page needs it."""

    referral_id: str
    source_version: str | None
    status: str
    fhir_hash: str
    delivered_hash: str | None
    #: hash of the Patient and ServiceRequest as built from the trust record (None: legacy)
    meaning_hash: str | None


@dataclass(frozen=True)
class PageState:
    """The stored state of a pull page's records, looked up once per page."""

    #: trust record id -> hash of the version last stored
    source_hashes: dict[str, str]
    #: (record ref, payload hash) of every open quarantine entry
    quarantined: set[tuple[str, str]]
    #: trust record id -> the ledger entry
    current: dict[str, Stored] = field(default_factory=dict)

    def unchanged(self, record_ref: str, source_hash: str) -> bool:
        """True if this exact version is stored already, or set aside already."""
        return (
            self.source_hashes.get(record_ref) == source_hash
            or (record_ref, source_hash) in self.quarantined
        )


@dataclass(frozen=True)
class NewQuarantine:
    """A record to set aside with the field and reason that stopped it."""

    source: str
    record_ref: str
    code: str
    reason: str
    field: str | None
    payload: JsonDict


@dataclass(frozen=True)
class NewOutboxItem:
    """A write-back to queue; ``key`` is deterministic, so queueing twice is a no-op."""

    key: str
    referral_id: str
    kind: str
    resource_type: str
    resource_id: str
    depends_on: str | None = None
    context: JsonDict = field(default_factory=dict)
    #: lower is claimed first (``RISK_PRIORITY`` for risks, ``ROUTINE_PRIORITY`` else)
    priority: int = 100


#: the outbox priority of a risk write-back: claimed before every routine row
RISK_PRIORITY = 0
ROUTINE_PRIORITY = 100

#: the states of an outbox row, in the order a write-back moves through them
OUTBOX_STATES = ("pending", "in_flight", "done", "dead", "cancelled")


@dataclass(frozen=True)
class NewRiskEvent:
    """A risk to follow until the trust acknowledges it (``RiskEventRow``)."""

    id: str
    referral_id: str | None
    outbox_key: str | None
    origin: str
    level: str
    reason: str
    raised_at: datetime
