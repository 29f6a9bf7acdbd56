"""The state store: one ``Store`` with the transactions the flows need."""

from ehr_bridge.store.models import (
    OutboxRow,
    PatientRow,
    QuarantineRow,
    ReferralRow,
    ResourceRow,
    RunRow,
    utcnow,
)
from ehr_bridge.store.store import (
    NewOutboxItem,
    NewQuarantine,
    PulledReferral,
    Store,
    canonical_json,
    content_hash,
)

__all__ = [
    "NewOutboxItem",
    "NewQuarantine",
    "OutboxRow",
    "PatientRow",
    "PulledReferral",
    "QuarantineRow",
    "ReferralRow",
    "ResourceRow",
    "RunRow",
    "Store",
    "canonical_json",
    "content_hash",
    "utcnow",
]
