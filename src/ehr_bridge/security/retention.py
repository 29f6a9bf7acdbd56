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

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from ehr_bridge.config import SecurityConfig
from ehr_bridge.errors import ConfigError
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


def purge(
    store: Store, security: SecurityConfig, *, now: datetime | None = None, dry_run: bool = False
) -> PurgeCounts:
    """Empty the payloads past retention; one transaction, so a failure changes nothing.

    Raises:
        ConfigError: ``security.retention_days`` is not set.
    """
    if security.retention_days is None:
        raise ConfigError("set retention_days to purge payloads", key="security.retention_days")
    cutoff = (now or utcnow()) - timedelta(days=security.retention_days)
    stamp = now or utcnow()
    types = set(security.purge_resource_types)
    counts = PurgeCounts(dry_run=dry_run)
    with store.session() as s:
        done = [r for r in s.exec(select(ReferralRow)).all() if _reconciled(s, r, cutoff)]
        counts.referrals = len(done)
        for referral in done:
            counts.resources += _empty_resources(s, referral.id, types - {"Patient"}, stamp)
        if "Patient" in types:
            counts.patients = _empty_patients(s, {r.id for r in done}, stamp)
        counts.quarantine = _empty_quarantine(s, cutoff, stamp)
        if dry_run:
            s.rollback()
    return counts


def _reconciled(s: Session, referral: ReferralRow, cutoff: datetime) -> bool:
    """Episode ended, every write-back settled, and quiet since ``cutoff``."""
    ended = s.exec(
        select(ResourceRow.id).where(
            ResourceRow.referral_id == referral.id, ResourceRow.resource_type == "EpisodeOfCare"
        )
    ).first()
    if ended is None or _latest(referral.last_pulled_at) > cutoff:
        return False
    outbox = s.exec(select(OutboxRow).where(OutboxRow.referral_id == referral.id)).all()
    if any(row.state in OPEN_OUTBOX or _latest(row.updated_at) > cutoff for row in outbox):
        return False
    changed = s.exec(
        select(func.max(ResourceRow.updated_at)).where(ResourceRow.referral_id == referral.id)
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


def _empty_patients(s: Session, done: set[str], stamp: datetime) -> int:
    """Patients whose every referral is reconciled."""
    patients = {r.patient_id for r in s.exec(select(ReferralRow)).all() if r.id in done}
    emptied = 0
    for patient_id in sorted(patients):
        referrals = s.exec(select(ReferralRow.id).where(ReferralRow.patient_id == patient_id))
        if not set(referrals.all()) <= done:
            continue
        row = s.get(ResourceRow, ("Patient", patient_id))
        if row is not None and row.purged_at is None:
            row.body, row.key_id, row.purged_at = "", None, stamp
            s.add(row)
            emptied += 1
    return emptied


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
