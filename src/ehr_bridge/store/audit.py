"""The audit log: who did what, when and why, to which record; append-only.

Operator actions (actor = the OS user who ran the command) and every write to a trust
record (actor = the ehr-bridge worker) are recorded in the same transaction as the change
they describe, so the log can never claim a fix that did not happen, nor miss one that
did. The table refuses UPDATE and DELETE by trigger. Entries hold ids, codes, outcomes and
field names only, never record contents, so the log can be shown to anyone who may run
the CLI.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from ehr_bridge.store.models import AuditEventRow, utcnow

#: every action the log records (``audit list --action`` takes any prefix of one)
AUDIT_ACTIONS = (
    "identity.nhs_number_added",
    "identity.nhs_number_corrected",
    "identity.nhs_number_removed",
    "identity.patient_changed",
    "identity.trust_merge",
    "outbox.cancel",
    "outbox.retry",
    "patient.link",
    "patient.unlink",
    "pull.unknown_cancel",
    "quarantine.dismiss",
    "quarantine.retry",
    "reconcile.adopt",
    "reconcile.overwrite",
    "reconcile.requeue",
    "reconcile.run",
    "risk.acknowledged",
    "risk.resolve",
    "trust.write",
)


def operator() -> str:
    """The OS user running this command: the ``actor`` of an operator action."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (containers): fall back to the uid
        return f"uid:{os.getuid()}"


def engine_actor(worker: str) -> str:
    """The ``actor`` of a write the engine itself made (worker = host:pid)."""
    return f"ehr-bridge {worker}"


@dataclass(frozen=True)
class AuditEntry:
    """One thing done; ``detail`` must hold ids, codes and field names only."""

    action: str
    actor: str
    reason: str | None = None
    connection: str | None = None
    referral_id: str | None = None
    outbox_key: str | None = None
    patient_id: str | None = None
    outcome: str | None = None
    trust_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def add_audit(s: Session, entry: AuditEntry) -> None:
    """Add an entry inside the caller's transaction (it commits with the change)."""
    s.add(
        AuditEventRow(
            at=utcnow(),
            actor=entry.actor,
            action=entry.action,
            reason=entry.reason,
            connection=entry.connection,
            referral_id=entry.referral_id,
            outbox_key=entry.outbox_key,
            patient_id=entry.patient_id,
            outcome=entry.outcome,
            trust_id=entry.trust_id,
            detail=json.dumps(entry.detail, sort_keys=True, separators=(",", ":")),
        )
    )


class AuditLog:
    """Mixed into ``Store``: write and read the audit log."""

    session: Callable[[], Any]

    def record_audit(self, entry: AuditEntry) -> None:
        """Add one entry in its own transaction (for actions with no other change)."""
        with self.session() as s:
            add_audit(s, entry)

    def audit_events(
        self,
        *,
        since: datetime | None = None,
        referral_id: str | None = None,
        connection: str | None = None,
        action: str | None = None,
        limit: int | None = None,
    ) -> list[AuditEventRow]:
        """Entries, oldest first, filtered; ``limit`` keeps the newest ones."""
        with self.session() as s:
            query = select(AuditEventRow).order_by(col(AuditEventRow.id).desc())
            if since is not None:
                query = query.where(col(AuditEventRow.at) >= since)
            if referral_id:
                query = query.where(AuditEventRow.referral_id == referral_id)
            if connection:
                query = query.where(AuditEventRow.connection == connection)
            if action:
                query = query.where(col(AuditEventRow.action).startswith(action))
            if limit is not None:
                query = query.limit(limit)
            return list(reversed(s.exec(query).all()))
