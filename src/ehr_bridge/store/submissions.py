"""Collect's transactions: provider bundles' resources, write-backs and receipts, together.

Collect commits a batch of bundles per transaction. The ORM's unit of work costs about a
millisecond per row it tracks and a bundle carries some fifteen rows (resources,
write-backs, its receipt), so a batch is written with a few set-based statements
(``store.bulk``) instead; only a quarantine entry, which is rare, takes the ORM path. The
receipt (``submission`` row) commits with the bundle's data, which is what lets collect
answer "already stored" for a bundle whose acknowledgement was lost.

A bundle also carries what it does to scores held for their items (``store.held_scores``):
the scores it holds, the holds it ends, the scores it checked and those it refused. They
commit with it too, so a hold is ended exactly when its outcome (a write-back or a
quarantine entry) is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlmodel import Session, col, select

from ehr_bridge.security.crypto import PayloadCipher
from ehr_bridge.store.bulk import (
    canonical_json,
    chunks,
    close_open_quarantine,
    insert_new,
    resource_row,
    text_hash,
    upsert,
    upsert_resources,
)
from ehr_bridge.store.held_scores import (
    HeldScore,
    remove_observations,
    resolve_score_entries,
    save_holds,
)
from ehr_bridge.store.models import (
    OutboxRow,
    ReferralRow,
    RiskEventRow,
    SubmissionRow,
    utcnow,
)
from ehr_bridge.store.risks import risk_row
from ehr_bridge.store.values import NewOutboxItem, NewQuarantine, NewRiskEvent

JsonDict = dict[str, Any]
Row = dict[str, Any]

_OUTBOX: Table = OutboxRow.__table__  # type: ignore[attr-defined]
_SUBMISSIONS: Table = SubmissionRow.__table__  # type: ignore[attr-defined]
_RISKS: Table = RiskEventRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class CollectedBundle:
    """One provider bundle to record: what it carries, or the quarantine entry it became."""

    handle: str
    bundle_hash: str
    referral_id: str | None
    resources: Sequence[JsonDict] = ()
    outbox: Sequence[NewOutboxItem] = ()
    quarantine: NewQuarantine | None = None
    #: scores stored but not queued: their items are not collected yet
    holds: Sequence[HeldScore] = ()
    #: observation ids whose holds end with this bundle (released, refused or sent again)
    unheld: Sequence[str] = ()
    #: observation ids whose items were checked and agree (their open entries resolve)
    checked_scores: Sequence[str] = ()
    #: entries for held scores whose items disagree (``record_ref``: the observation id)
    refused_scores: Sequence[NewQuarantine] = ()
    #: risks to follow until acknowledged (a refused bundle's too: it pages at once)
    risks: Sequence[NewRiskEvent] = ()


@dataclass(frozen=True)
class ReferralOwner:
    """What collect checks a bundle's referral against: its connection and patient."""

    connection: str
    patient_id: str


class Submissions:
    """Mixed into ``Store``: remember provider bundles and store what they carry."""

    session: Callable[[], Any]
    cipher: PayloadCipher
    _add_quarantine: Callable[[Session, str, NewQuarantine], None]

    def stored_submissions(self, connection: str, bundle_hashes: Sequence[str]) -> set[str]:
        """Which of these bundles were stored (or quarantined) before, in one query per chunk."""
        found: set[str] = set()
        with self.session() as s:
            for chunk in chunks(bundle_hashes):
                query = select(SubmissionRow.bundle_hash).where(
                    SubmissionRow.connection == connection,
                    col(SubmissionRow.bundle_hash).in_(chunk),
                )
                found.update(s.exec(query))
        return found

    def referral_owners(self, referral_ids: Sequence[str]) -> dict[str, ReferralOwner]:
        """Connection and patient of each referral that exists, for a batch's checks."""
        found: dict[str, ReferralOwner] = {}
        with self.session() as s:
            for chunk in chunks(referral_ids):
                query = select(
                    ReferralRow.id, ReferralRow.connection, ReferralRow.patient_id
                ).where(col(ReferralRow.id).in_(chunk))
                for rid, connection, patient_id in s.exec(query):
                    found[rid] = ReferralOwner(connection, patient_id)
        return found

    def save_submission(
        self,
        connection: str,
        handle: str,
        bundle_hash: str,
        referral_id: str | None,
        resources: Sequence[JsonDict],
        outbox: Sequence[NewOutboxItem],
        quarantine: NewQuarantine | None = None,
    ) -> None:
        """Store a provider bundle's resources and queue its write-backs, together."""
        bundle = CollectedBundle(handle, bundle_hash, referral_id, resources, outbox, quarantine)
        self.save_submissions(connection, [bundle])

    def save_submissions(self, connection: str, bundles: Sequence[CollectedBundle]) -> None:
        """Store a batch of bundles in one transaction: all of it is committed, or none.

        Row for row the outcome equals saving the bundles one after another, in order:
        a write-back key queued twice keeps its first row, a resource stored twice its
        last body. Each handle should occur once per batch (quarantine entries are closed
        for the stored handles before the batch's new entries are added).
        """
        now = utcnow()
        stored = [b for b in bundles if b.quarantine is None]
        with self.session() as s:
            upsert_resources(s, self._resource_rows(connection, stored, now))
            _queue_new(s, [_outbox_row(connection, item, now) for b in stored for item in b.outbox])
            close_open_quarantine(s, connection, [b.handle for b in stored], "resolved", now)
            for bundle in bundles:
                if bundle.quarantine is not None:
                    self._add_quarantine(s, connection, bundle.quarantine)
            self._save_score_outcomes(s, connection, stored, now)
            new_risks = [risk_row(connection, r, now) for b in bundles for r in b.risks]
            insert_new(s, _RISKS, new_risks, keys=("id",))
            upsert(
                s,
                _SUBMISSIONS,
                [_submission_row(connection, b, now) for b in bundles],
                keys=("connection", "bundle_hash"),
                update=("handle", "referral_id", "collected_at"),
            )

    def _save_score_outcomes(
        self, s: Session, connection: str, stored: Sequence[CollectedBundle], now: datetime
    ) -> None:
        """Holds, refused and checked scores, each score ending as its last bundle left it."""
        holds: dict[str, HeldScore | None] = {}
        verdicts: dict[str, bool] = {}  # observation id -> checked (True) or refused
        for bundle in stored:
            holds.update(dict.fromkeys(bundle.unheld))
            holds.update((hold.observation_id, hold) for hold in bundle.holds)
            for resource in bundle.resources:
                if resource["resourceType"] == "Observation":
                    verdicts.pop(resource["id"], None)  # stored again: not refused any more
            verdicts.update(dict.fromkeys(bundle.checked_scores, True))
            for entry in bundle.refused_scores:
                self._add_quarantine(s, connection, entry)
                verdicts[entry.record_ref] = False
        passed = [obs for obs, checked in verdicts.items() if checked]
        resolve_score_entries(s, connection, passed, now)
        remove_observations(s, connection, [obs for obs, ok in verdicts.items() if not ok])
        save_holds(s, connection, holds, now)

    def _resource_rows(
        self, connection: str, bundles: Sequence[CollectedBundle], now: datetime
    ) -> list[Row]:
        rows = []
        for bundle in bundles:
            for resource in bundle.resources:
                body = canonical_json(resource)
                body_hash = text_hash(body)
                rows.append(
                    resource_row(
                        self.cipher, connection, bundle.referral_id, resource, body, body_hash, now
                    )
                )
        return rows


def _outbox_row(connection: str, item: NewOutboxItem, now: datetime) -> Row:
    """A new pending ``outbox`` row; a core insert skips the model's Python-side defaults."""
    return {
        "id": item.key,
        "connection": connection,
        "referral_id": item.referral_id,
        "kind": item.kind,
        "resource_type": item.resource_type,
        "resource_id": item.resource_id,
        "depends_on": item.depends_on,
        "context": canonical_json(item.context),
        "priority": item.priority,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _queue_new(s: Session, rows: Sequence[Row]) -> None:
    """Queue write-backs whose key is new; within the batch the first row of a key wins.

    Queueing one after another kept the first row of a key (a later bundle's discharge
    of the same referral is not queued again); ``insert_new`` alone would keep the last.
    """
    first: dict[str, Row] = {}
    for row in rows:
        first.setdefault(row["id"], row)
    insert_new(s, _OUTBOX, list(first.values()), keys=("id",))


def _submission_row(connection: str, bundle: CollectedBundle, now: datetime) -> Row:
    return {
        "connection": connection,
        "bundle_hash": bundle.bundle_hash,
        "handle": bundle.handle,
        "referral_id": bundle.referral_id,
        "collected_at": now,
    }
