"""History for `referrals show`: versions pulled, deliveries, write attempts, quarantine.

The ledger tables hold only the latest state of a referral; these rows keep how it got
there. Each is written inside the transaction that made the change (pull page, delivery,
closing a write attempt), so the story and the state can never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlmodel import Session, col, select

from ehr_bridge.store.bulk import chunks
from ehr_bridge.store.models import (
    DeliveryRow,
    OutboxRow,
    QuarantineRow,
    ReferralRow,
    ReferralVersionRow,
    WriteAttemptRow,
    utcnow,
)


def add_version(s: Session, row: ReferralRow, *, echo: bool = False) -> None:
    """Remember the trust record version just stored for ``row`` (``echo``: ours, see model)."""
    s.add(
        ReferralVersionRow(
            echo=echo,
            connection=row.connection,
            referral_id=row.id,
            source_version=row.source_version,
            source_hash=row.source_hash,
            fhir_hash=row.fhir_hash,
            patient_id=row.patient_id,
            status=row.status,
            pulled_at=utcnow(),
        )
    )


def add_delivery(s: Session, row: ReferralRow, episodes: Sequence[str]) -> None:
    """Remember a hand-over to the provider and the earlier episodes it carried."""
    s.add(
        DeliveryRow(
            connection=row.connection,
            referral_id=row.id,
            patient_id=row.patient_id,
            fhir_hash=row.delivered_hash or row.fhir_hash,
            episodes=json.dumps(list(episodes)),
            delivered_at=utcnow(),
        )
    )


def add_attempt(
    s: Session, row: OutboxRow, outcome: str, *, worker: str | None = None, **extra: Any
) -> None:
    """Remember one finished attempt at a write-back (``extra``: trust_id, error, ...)."""
    s.add(
        WriteAttemptRow(
            outbox_key=row.id,
            connection=row.connection,
            referral_id=row.referral_id,
            kind=row.kind,
            outcome=outcome,
            worker=worker,
            at=utcnow(),
            **extra,
        )
    )


class Lineage:
    """Mixed into ``Store``: the history rows of one referral, oldest first."""

    session: Callable[[], Any]

    def referral_versions(self, referral_id: str) -> list[ReferralVersionRow]:
        """Every changed version of the trust record that was stored."""
        with self.session() as s:
            query = select(ReferralVersionRow).where(ReferralVersionRow.referral_id == referral_id)
            return list(s.exec(query.order_by(col(ReferralVersionRow.id))).all())

    def landed_status_events(
        self, connection: str, referral_ids: Sequence[str], events: Sequence[str]
    ) -> set[tuple[str, str]]:
        """(referral id, event) of our status write-backs that reached the trust.

        In flight counts: the trust may hold a write whose answer we have not recorded yet.
        """
        from ehr_bridge.domain.ids import artefact_key  # the domain package, when needed

        keys = {
            artefact_key(connection, "referral_status", event, rid): (rid, event)
            for rid in referral_ids
            for event in events
        }
        found: set[tuple[str, str]] = set()
        with self.session() as s:
            for chunk in chunks(list(keys)):
                query = select(OutboxRow.id).where(
                    col(OutboxRow.id).in_(chunk), col(OutboxRow.state).in_(("done", "in_flight"))
                )
                found.update(keys[key] for key in s.exec(query))
        return found

    def deliveries(self, referral_id: str) -> list[DeliveryRow]:
        """Every hand-over of the referral to the provider."""
        with self.session() as s:
            query = select(DeliveryRow).where(DeliveryRow.referral_id == referral_id)
            return list(s.exec(query.order_by(col(DeliveryRow.id))).all())

    def write_attempts(
        self, *, referral_id: str | None = None, outbox_key: str | None = None
    ) -> list[WriteAttemptRow]:
        """Finished write attempts of a referral or of one outbox row."""
        with self.session() as s:
            query = select(WriteAttemptRow).order_by(col(WriteAttemptRow.id))
            if referral_id:
                query = query.where(WriteAttemptRow.referral_id == referral_id)
            if outbox_key:
                query = query.where(WriteAttemptRow.outbox_key == outbox_key)
            return list(s.exec(query).all())

    def quarantine_for(self, connection: str, record_ref: str) -> list[QuarantineRow]:
        """Every quarantine entry (any state) of one trust record or provider file."""
        with self.session() as s:
            query = select(QuarantineRow).where(
                QuarantineRow.connection == connection, QuarantineRow.record_ref == record_ref
            )
            return list(s.exec(query.order_by(col(QuarantineRow.id))).all())

    def had_patient(self, referral_id: str, patient_id: str) -> bool:
        """True if any stored version of the referral named this patient (before a merge)."""
        with self.session() as s:
            query = select(ReferralVersionRow.id).where(
                ReferralVersionRow.referral_id == referral_id,
                ReferralVersionRow.patient_id == patient_id,
            )
            return s.exec(query).first() is not None
