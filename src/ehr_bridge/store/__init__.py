"""The state store: one ``Store`` with the transactions the flows need."""

from ehr_bridge.store.audit import AuditEntry, engine_actor, operator
from ehr_bridge.store.bulk import canonical_json, content_hash
from ehr_bridge.store.identity import PatientMatch
from ehr_bridge.store.models import (
    AuditEventRow,
    DeliveryRow,
    OutboxRow,
    PatientLinkRow,
    PatientRow,
    QuarantineRow,
    ReferralRow,
    ReferralVersionRow,
    ResourceRow,
    RunRow,
    WriteAttemptRow,
    utcnow,
)
from ehr_bridge.store.store import Store
from ehr_bridge.store.values import (
    NewOutboxItem,
    NewQuarantine,
    PageState,
    PulledReferral,
    Restamp,
    Stored,
)

__all__ = [
    "AuditEntry",
    "AuditEventRow",
    "DeliveryRow",
    "NewOutboxItem",
    "NewQuarantine",
    "OutboxRow",
    "PageState",
    "PatientLinkRow",
    "PatientMatch",
    "PatientRow",
    "PulledReferral",
    "QuarantineRow",
    "ReferralRow",
    "ReferralVersionRow",
    "ResourceRow",
    "Restamp",
    "RunRow",
    "Store",
    "Stored",
    "WriteAttemptRow",
    "canonical_json",
    "content_hash",
    "engine_actor",
    "operator",
    "utcnow",
]
