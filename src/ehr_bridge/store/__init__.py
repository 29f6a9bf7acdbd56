"""The state store: one ``Store`` with the transactions the flows need."""

from ehr_bridge.store.audit import AUDIT_ACTIONS, AuditEntry, engine_actor, operator
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
    RiskEventRow,
    RunRow,
    WriteAttemptRow,
    utcnow,
)
from ehr_bridge.store.risks import RiskView
from ehr_bridge.store.store import Store
from ehr_bridge.store.values import (
    OUTBOX_STATES,
    RISK_PRIORITY,
    ROUTINE_PRIORITY,
    NewOutboxItem,
    NewQuarantine,
    NewRiskEvent,
    PageState,
    PulledReferral,
    Restamp,
    Stored,
)

__all__ = [
    "AUDIT_ACTIONS",
    "OUTBOX_STATES",
    "RISK_PRIORITY",
    "ROUTINE_PRIORITY",
    "AuditEntry",
    "AuditEventRow",
    "DeliveryRow",
    "NewOutboxItem",
    "NewQuarantine",
    "NewRiskEvent",
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
    "RiskEventRow",
    "RiskView",
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
