"""Retention: empty the payloads of finished referrals after ``security.retention_days``.

A referral's payloads may go once it is **reconciled**: the provider ended the episode (an
EpisodeOfCare is stored), every write-back for it is confirmed at the trust or withdrawn
(no outbox row pending, in flight or dead), and nothing about it changed for
``retention_days``. Then the bodies of its resources of ``purge_resource_types`` are
emptied, and a Patient's once every referral of that patient is reconciled. Closed
quarantine entries lose their raw record ``retention_days`` after they were closed.

What stays: every row, its content hash, its key id column cleared and ``purged_at`` set,
and the whole lineage (referral, outbox with trust ids, submissions, audit), so "what
happened to this referral" can still be answered, and a record the trust sends again is
recognised by its hash. The defaults keep the coded resources (ServiceRequest, Encounter,
Observation, EpisodeOfCare) so outcome reports still count old episodes.

The files the connections keep (provider ``sessions/processed`` and ``rejected``, HL7 v2
``received``) are deleted by ``ehr_bridge.sync.retention``, which needs the adapters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from ehr_bridge.config import SecurityConfig
from ehr_bridge.errors import ConfigError
from ehr_bridge.retry import current_scope
from ehr_bridge.store import OutboxRow, QuarantineRow, ReferralRow, ResourceRow, Store, utcnow

OPEN_OUTBOX = ("pending", "in_flight", "dead")


@dataclass
class PurgeCounts:
    """What a purge emptied (or would empty, on a dry run)."""

    referrals: int = 0
    resources: int = 0
    patients: int = 0
    quarantine: int = 0
    dry_run: bool = False


#: referrals emptied per transaction: a purge never holds the database's write lock long
BATCH_SIZE = 200


def purge(
    store: Store,
    security: SecurityConfig,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
) -> PurgeCounts:
    """Empty the payloads past retention, ``batch_size`` referrals per transaction.

    The reconciled referrals are found first, reading only; then each batch is checked
    again and emptied in one transaction, so a referral changed meanwhile keeps its
    payloads, and the flows beside it (the daemon runs this on a schedule) wait for one
    short transaction at most. A failure leaves the batches before it purged and the
    rest as they were; the next purge goes on. Stop (the daemon's) ends it between two
    batches. Closed quarantine entries go last, in a transaction of their own.

    Raises:
        ConfigError: ``security.retention_days`` is not set.
    """
    if security.retention_days is None:
        raise ConfigError("set retention_days to purge payloads", key="security.retention_days")
    stamp = now or utcnow()
    cutoff = stamp - timedelta(days=security.retention_days)
    run = _Purge(store, cutoff, stamp, set(security.purge_resource_types), dry_run)
    done = run.reconciled()
    for start in range(0, len(done), batch_size):
        if current_scope().stopping():
            return run.counts
        run.batch(done[start : start + batch_size], set(done))
    with store.session() as s:
        run.counts.quarantine = _empty_quarantine(s, cutoff, stamp)
        if dry_run:
            s.rollback()
    return run.counts


@dataclass
class _Purge:
    """One purge: its cut-off, what it empties, and the tally."""

    store: Store
    cutoff: datetime
    stamp: datetime
    types: set[str]
    dry_run: bool
    counts: PurgeCounts = field(default_factory=PurgeCounts)
    #: patients already emptied (or, on a dry run, counted) by an earlier batch
    patients: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.counts.dry_run = self.dry_run

    def reconciled(self) -> list[str]:
        """The ids of the referrals reconciled and quiet since the cut-off, reading only."""
        with self.store.session() as s:
            referrals = s.exec(select(ReferralRow.id, ReferralRow.last_pulled_at)).all()
            return sorted(rid for rid, last in referrals if _reconciled(s, rid, last, self.cutoff))

    def batch(self, ids: list[str], done: set[str]) -> None:
        """Empty one batch of referrals (each checked again) and the patients they finish."""
        with self.store.session() as s:
            still = [rid for rid in ids if self._still(s, rid)]
            self.counts.referrals += len(still)
            for referral_id in still:
                self.counts.resources += _empty_resources(
                    s, referral_id, self.types - {"Patient"}, self.stamp
                )
            if "Patient" in self.types:
                self.counts.patients += self._empty_patients(s, still, done)
            if self.dry_run:
                s.rollback()

    def _still(self, s: Session, referral_id: str) -> bool:
        row = s.get(ReferralRow, referral_id)
        return row is not None and _reconciled(s, row.id, row.last_pulled_at, self.cutoff)

    def _empty_patients(self, s: Session, still: list[str], done: set[str]) -> int:
        """Patients of these referrals whose every referral is reconciled (checked again)."""
        referrals = (s.get(ReferralRow, rid) for rid in still)
        patients = {referral.patient_id for referral in referrals if referral is not None}
        emptied = 0
        for patient_id in sorted(patients - self.patients):
            query = select(ReferralRow.id).where(ReferralRow.patient_id == patient_id)
            theirs = set(s.exec(query).all())
            if not theirs <= done or not all(self._still(s, rid) for rid in theirs - set(still)):
                continue
            row = s.get(ResourceRow, ("Patient", patient_id))
            if row is not None and row.purged_at is None:
                row.body, row.key_id, row.purged_at = "", None, self.stamp
                s.add(row)
                emptied += 1
                self.patients.add(patient_id)
        return emptied


def _reconciled(s: Session, referral_id: str, last_pulled: datetime, cutoff: datetime) -> bool:
    """Episode ended, every write-back settled, and quiet since ``cutoff``."""
    ended = s.exec(
        select(ResourceRow.id).where(
            ResourceRow.referral_id == referral_id, ResourceRow.resource_type == "EpisodeOfCare"
        )
    ).first()
    if ended is None or _latest(last_pulled) > cutoff:
        return False
    outbox = s.exec(select(OutboxRow).where(OutboxRow.referral_id == referral_id)).all()
    if any(row.state in OPEN_OUTBOX or _latest(row.updated_at) > cutoff for row in outbox):
        return False
    changed = s.exec(
        select(func.max(ResourceRow.updated_at)).where(ResourceRow.referral_id == referral_id)
    ).one()
    return changed is None or _latest(changed) <= cutoff


def _latest(value: datetime) -> datetime:
    """SQLite hands naive datetimes back for aggregates; the store writes UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _empty_resources(s: Session, referral_id: str, types: set[str], stamp: datetime) -> int:
    rows = s.exec(
        select(ResourceRow).where(
            ResourceRow.referral_id == referral_id,
            col(ResourceRow.resource_type).in_(sorted(types)),
            col(ResourceRow.purged_at).is_(None),
        )
    ).all()
    for row in rows:
        row.body, row.key_id, row.purged_at = "", None, stamp
        s.add(row)
    return len(rows)


def _empty_quarantine(s: Session, cutoff: datetime, stamp: datetime) -> int:
    rows = s.exec(
        select(QuarantineRow).where(
            QuarantineRow.state != "open", col(QuarantineRow.purged_at).is_(None)
        )
    ).all()
    emptied = 0
    for row in rows:
        closed = row.closed_at or row.created_at
        if _latest(closed) <= cutoff:
            row.payload, row.key_id, row.purged_at = "", None, stamp
            s.add(row)
            emptied += 1
    return emptied
