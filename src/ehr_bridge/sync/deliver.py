"""Deliver: hand referrals whose FHIR is new or changed to the provider platform.

Delivery is keyed by the ServiceRequest id, so delivering again after a crash only
replaces the same bundle. The first delivery also queues "accepted" for the trust, in
the same transaction that records the delivery.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from ehr_bridge.domain.ids import artefact_key
from ehr_bridge.domain.referral import ReferralResources, referral_bundle
from ehr_bridge.errors import EhrBridgeError
from ehr_bridge.store import NewOutboxItem, ReferralRow, Store
from ehr_bridge.sync.connection import Connection

log = logging.getLogger(__name__)


@dataclass
class DeliverCounts:
    """What one deliver run did."""

    delivered: int = 0
    redelivered: int = 0
    failed: int = 0


def deliver(conn: Connection, store: Store, stop: threading.Event | None = None) -> DeliverCounts:
    """Deliver every referral not yet delivered in its current form."""
    counts = DeliverCounts()
    for row in store.referrals_to_deliver(conn.name):
        if stop and stop.is_set():
            break
        try:
            _deliver_one(conn, store, row)
        except (EhrBridgeError, OSError) as exc:
            counts.failed += 1
            log.warning(
                "delivery failed; will retry next run",
                extra={"connection": conn.name, "referral": row.id, "error": type(exc).__name__},
            )
            continue
        if row.delivered_hash is None:
            counts.delivered += 1
        else:
            counts.redelivered += 1
    return counts


def _deliver_one(conn: Connection, store: Store, row: ReferralRow) -> None:
    service_request = store.resource("ServiceRequest", row.id)
    patient = store.resource("Patient", row.patient_id)
    if service_request is None or patient is None:
        raise EhrBridgeError(f"referral {row.id} has no stored FHIR resources")
    bundle = referral_bundle(ReferralResources(patient=patient, service_request=service_request))
    conn.provider.deliver_referral(row.id, bundle)
    first = row.delivered_hash is None and row.status == "active"
    outbox = [_accepted(conn, row)] if first and conn.writes("referral_status") else []
    store.mark_delivered(row.id, row.fhir_hash, outbox)
    log.info("referral delivered", extra={"connection": conn.name, "referral": row.id})


def _accepted(conn: Connection, row: ReferralRow) -> NewOutboxItem:
    return NewOutboxItem(
        key=artefact_key(conn.name, "referral_status", "accepted", row.id),
        referral_id=row.id,
        kind="referral_status",
        resource_type="ServiceRequest",
        resource_id=row.id,
        context={"status": "accepted", "date": datetime.now(UTC).date().isoformat()},
    )
