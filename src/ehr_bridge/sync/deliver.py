"""Deliver: hand referrals whose FHIR is new or changed to the provider platform.

Delivery is keyed by the ServiceRequest id, so delivering again after a crash only
replaces the same bundle. The first delivery also queues "accepted" for the trust, in
the same transaction that records the delivery. A re-referral carries the patient's
earlier episodes (EpisodeOfCare, linked from the ServiceRequest), and each delivery is
remembered with the episodes it carried, for `referrals show`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ehr_bridge.domain.ids import artefact_key
from ehr_bridge.domain.referral import ReferralResources, prior_episode, referral_bundle
from ehr_bridge.errors import EhrBridgeError, RecordValidationError
from ehr_bridge.retry import current_scope
from ehr_bridge.store import NewOutboxItem, ReferralRow, Store
from ehr_bridge.sync.connection import Connection

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]

#: referrals read from the queue at a time: memory stays bounded whatever the backlog
PAGE_SIZE = 500
#: walks of the queue in one run: the first, and again while one hands something over
MAX_PASSES = 3


@dataclass
class DeliverCounts:
    """What one deliver run did."""

    delivered: int = 0
    redelivered: int = 0
    failed: int = 0


def deliver(
    conn: Connection,
    store: Store,
    stop: threading.Event | None = None,
    *,
    page_size: int = PAGE_SIZE,
) -> DeliverCounts:
    """Deliver every referral not yet delivered in its current form, until none is left.

    The queue is read ``page_size`` referrals at a time, oldest first, so a backlog of
    any length is delivered in one run with one page in memory; referrals pulled while
    it runs join the end. A pass that handed something over is followed by another from
    the start, for a referral that changed meanwhile behind the one in hand (a pull of
    another daemon), up to ``MAX_PASSES``; a referral whose delivery failed waits for the
    next run. ``stop`` or the run's deadline ends the run between two referrals.
    """
    walk = _Walk(conn, store, stop, page_size)
    for _ in range(MAX_PASSES):
        if not walk.one_pass():
            break
    return walk.counts


@dataclass
class _Walk:
    """One deliver run: the tally, and the referrals that failed in it (not tried again)."""

    conn: Connection
    store: Store
    stop: threading.Event | None
    page_size: int
    counts: DeliverCounts = field(default_factory=DeliverCounts)
    failed: set[str] = field(default_factory=set)
    halted: bool = False

    def one_pass(self) -> bool:
        """Walk the queue once; True if something was handed over and the run goes on."""
        handed, after = False, None
        while page := self.store.referrals_to_deliver(self.conn.name, self.page_size, after):
            for row in page:
                if self._halt():
                    return False
                if row.id not in self.failed:
                    handed = self._one(row) or handed
            if len(page) < self.page_size:
                break
            after = (page[-1].first_pulled_at, page[-1].id)
        return handed and not self._halt()

    def _halt(self) -> bool:
        if self.halted or (self.stop is not None and self.stop.is_set()):
            self.halted = True
        elif current_scope().expired():
            log.warning("deliver reached its deadline", extra={"connection": self.conn.name})
            self.halted = True
        return self.halted

    def _one(self, row: ReferralRow) -> bool:
        try:
            _deliver_one(self.conn, self.store, row)
        except (EhrBridgeError, OSError) as exc:
            self.counts.failed += 1
            self.failed.add(row.id)
            log.warning(
                "delivery failed; will retry next run",
                extra={
                    "connection": self.conn.name,
                    "referral": row.id,
                    "error": type(exc).__name__,
                },
            )
            return False
        if row.delivered_hash is None:
            self.counts.delivered += 1
        else:
            self.counts.redelivered += 1
        return True


def _deliver_one(conn: Connection, store: Store, row: ReferralRow) -> None:
    service_request = store.resource("ServiceRequest", row.id)
    patient = store.resource("Patient", row.patient_id)
    if service_request is None or patient is None:
        raise EhrBridgeError(f"referral {row.id} has no stored FHIR resources")
    episodes = _prior_episodes(conn, store, row, service_request)
    resources = ReferralResources(patient=patient, service_request=service_request)
    bundle = referral_bundle(resources, [episode for _, episode in episodes])
    conn.provider.deliver_referral(row.id, bundle)
    first = row.delivered_hash is None and row.status == "active"
    outbox = [_accepted(conn, row)] if first and conn.writes("referral_status") else []
    store.mark_delivered(row.id, row.fhir_hash, outbox, [rid for rid, _ in episodes])
    log.info("referral delivered", extra={"connection": conn.name, "referral": row.id})


def _prior_episodes(
    conn: Connection, store: Store, row: ReferralRow, request: JsonDict
) -> list[tuple[str, JsonDict]]:
    """The patient's earlier referrals as EpisodeOfCare resources, oldest first."""
    found = []
    for other, earlier in earlier_referrals(store, row, request):
        try:
            episode = prior_episode(conn.name, row.patient_id, earlier, _episode_end(store, other))
        except RecordValidationError:  # an odd stored record must not block this delivery
            log.warning("earlier episode skipped", extra={"referral": row.id, "other": other.id})
            continue
        found.append((other.id, episode))
    return found


def earlier_referrals(
    store: Store, row: ReferralRow, request: JsonDict | None = None
) -> list[tuple[ReferralRow, JsonDict]]:
    """The same patient's referrals on the same connection received before this one.

    Ordered by received date (``authoredOn``), then by when we first pulled them; each
    comes with its stored ServiceRequest. Also what `referrals show` lists.
    """
    request = request or store.resource("ServiceRequest", row.id) or {}
    mine = (str(request.get("authoredOn", "")), row.first_pulled_at)
    found = []
    for other in store.referrals_of_patient(row.patient_id):
        if other.id == row.id or other.connection != row.connection:
            continue
        earlier = store.resource("ServiceRequest", other.id)
        when = (str((earlier or {}).get("authoredOn", "")), other.first_pulled_at)
        if other.patient_id == row.patient_id and earlier is not None and when < mine:
            found.append((when, other, earlier))
    return [(other, earlier) for _, other, earlier in sorted(found, key=lambda f: f[0])]


def _episode_end(store: Store, row: ReferralRow) -> JsonDict | None:
    """The provider's own EpisodeOfCare ending an earlier referral, if it sent one."""
    ends = [r for r in store.resources_for_referral(row.id) if r["resourceType"] == "EpisodeOfCare"]
    return ends[-1] if ends else None


def _accepted(conn: Connection, row: ReferralRow) -> NewOutboxItem:
    return NewOutboxItem(
        key=artefact_key(conn.name, "referral_status", "accepted", row.id),
        referral_id=row.id,
        kind="referral_status",
        resource_type="ServiceRequest",
        resource_id=row.id,
        context={"status": "accepted", "date": datetime.now(UTC).date().isoformat()},
    )
