"""Outbox leasing: how workers (threads or daemons) share write-backs without doubling any.

A row is claimed by moving it to ``in_flight`` with an owner and a lease expiry, only if
it is still due. On PostgreSQL the candidates are locked with ``FOR UPDATE SKIP LOCKED``
so daemons never wait on, or take, each other's rows. On SQLite a claim is one
``UPDATE ... WHERE id IN (due candidates) RETURNING``: SQLite runs it under its single write
lock, so choosing and taking the rows cannot be split by another writer. A lapsed lease is
claimable again and counts as an attempt whose outcome is unknown, so the next worker reads
before writing. Closing an attempt is owner-checked: a worker whose lease was taken over
cannot overwrite the new owner's outcome.

The hot path (claim, the inputs of one write, closing an attempt) is one statement or one
transaction each, in Core where the ORM adds nothing: push calls it for every write-back.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    or_,
    update,
)
from sqlalchemy import select as core_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from ehr_bridge.security.crypto import resource_aad
from ehr_bridge.store.audit import AuditEntry, add_audit, engine_actor
from ehr_bridge.store.models import (
    AuditEventRow,
    OutboxRow,
    ReferralRow,
    ResourceRow,
    WriteAttemptRow,
    utcnow,
)
from ehr_bridge.store.values import RISK_PRIORITY

FINISHED = ("done", "dead", "cancelled")
_OUTBOX: Table = OutboxRow.__table__  # type: ignore[attr-defined]
_ATTEMPTS: Table = WriteAttemptRow.__table__  # type: ignore[attr-defined]
_AUDIT: Table = AuditEventRow.__table__  # type: ignore[attr-defined]
#: what closing an attempt reads back for the write history and the audit log
_REMEMBERED = (
    "id",
    "connection",
    "referral_id",
    "kind",
    "state",
    "trust_id",
    "last_error",
    "last_error_code",
)
_OUTCOMES = {"done": "written", "pending": "retry", "dead": "dead"}


def _due(now: Any) -> Any:
    return or_(
        and_(col(OutboxRow.state) == "pending", col(OutboxRow.next_attempt_at) <= now),
        and_(col(OutboxRow.state) == "in_flight", col(OutboxRow.lease_expires_at) < now),
    )


def _dependency_finished() -> Any:
    dependency = aliased(OutboxRow)
    unfinished = exists().where(
        col(dependency.id) == col(OutboxRow.depends_on), col(dependency.state).not_in(FINISHED)
    )
    return or_(col(OutboxRow.depends_on).is_(None), ~unfinished)


def _claim_skip_locked(s: Session, params: dict[str, Any], risk_only: bool) -> list[OutboxRow]:
    """Lock due candidates no other daemon holds, then take them, in one transaction."""
    candidates = _candidates(risk_only).with_for_update(skip_locked=True)
    ids = list(s.exec(candidates, params=params).all())
    if not ids:
        return []
    statement = _claim_statement(skip_locked=True, risk_only=risk_only)
    return _scalars(s, statement, {**params, "p_ids": ids})


def _scalars(s: Session, statement: Any, params: dict[str, Any]) -> list[OutboxRow]:
    options = {"synchronize_session": False}
    return list(s.exec(statement, params=params, execution_options=options).scalars().all())


@functools.cache
def _candidates(risk_only: bool) -> Any:
    """The ids of due rows whose dependency is finished, risks first, then oldest first.

    ``risk_only`` is the risk lane's claim: it never takes a routine row, so it never
    waits behind one.
    """
    due = _due(bindparam("p_now", type_=_OUTBOX.c.next_attempt_at.type))
    query = select(OutboxRow.id).where(
        OutboxRow.connection == bindparam("p_connection"), due, _dependency_finished()
    )
    if risk_only:
        query = query.where(col(OutboxRow.priority) == RISK_PRIORITY)
    return query.order_by(
        col(OutboxRow.priority), col(OutboxRow.created_at), col(OutboxRow.id)
    ).limit(bindparam("p_limit"))


@functools.cache
def _claim_statement(*, skip_locked: bool, risk_only: bool = False) -> Any:
    """Lease the chosen rows and return them, built once (building cost more than running).

    With ``skip_locked`` the ids were locked first and come as ``p_ids``; else the due
    candidates are chosen inside the statement.
    """
    if skip_locked:
        which = col(OutboxRow.id).in_(bindparam("p_ids", expanding=True))
    else:
        which = col(OutboxRow.id).in_(_candidates(risk_only).scalar_subquery())
    return update(OutboxRow).where(which).values(**_claim_values()).returning(OutboxRow)


@functools.cache
def _finish_statement(owned: bool, with_trust_id: bool, remember: bool) -> Any:
    """Closing an attempt, built once per shape: building it per row cost more than running it.

    Parameters are named ``p_*`` (SQLAlchemy reserves the column names in a SET clause).
    """
    c = _OUTBOX.c

    def param(name: str, column: str) -> Any:
        return bindparam(f"p_{name}", type_=c[column].type)

    values: dict[str, Any] = {
        "state": param("state", "state"),
        "lease_owner": None,
        "lease_expires_at": None,
        "attempts": c.attempts + param("counted", "attempts"),
        "last_error": param("error", "last_error"),
        "last_error_code": param("error_code", "last_error_code"),
        "next_attempt_at": param("next_attempt_at", "next_attempt_at"),
        "updated_at": param("now", "updated_at"),
        "done_at": param("done_at", "done_at"),
    }
    if with_trust_id:
        values["trust_id"] = param("trust_id", "trust_id")
    condition = c.id == param("key", "id")
    if owned:
        condition = and_(condition, c.lease_owner == param("owner", "lease_owner"))
    statement = update(_OUTBOX).where(condition).values(values)
    return statement.returning(*(c[name] for name in _REMEMBERED)) if remember else statement


def _claim_values() -> dict[str, Any]:
    return {
        "state": "in_flight",
        "lease_owner": bindparam("p_owner", type_=_OUTBOX.c.lease_owner.type),
        "lease_expires_at": bindparam("p_expires", type_=_OUTBOX.c.lease_expires_at.type),
        "updated_at": bindparam("p_now", type_=_OUTBOX.c.updated_at.type),
        # a lapsed lease's attempt has an unknown outcome: count it
        "attempts": case(
            (col(OutboxRow.state) == "in_flight", col(OutboxRow.attempts) + 1),
            else_=col(OutboxRow.attempts),
        ),
    }


def _write_inputs_query() -> Any:
    """The row's referral, resource, patient and dependency by outer joins (built once: hot).

    The patient is the one the trust's own record of the referral names (its *natural*
    patient, not the one an operator link leads to): the trust files what we write against
    its identifiers for that patient.
    """
    dependency = aliased(OutboxRow)
    patient = aliased(ResourceRow)
    natural = func.coalesce(col(ReferralRow.natural_patient_id), col(ReferralRow.patient_id))
    return (
        core_select(
            col(ReferralRow.trust_referral_id),
            col(ResourceRow.body),
            col(ResourceRow.key_id),
            col(ResourceRow.purged_at),
            col(dependency.state),
            col(dependency.trust_id),
            col(patient.id),
            col(patient.body),
            col(patient.key_id),
            col(patient.purged_at),
        )
        .select_from(OutboxRow)
        .outerjoin(ReferralRow, col(ReferralRow.id) == col(OutboxRow.referral_id))
        .outerjoin(
            ResourceRow,
            and_(
                col(ResourceRow.resource_type) == col(OutboxRow.resource_type),
                col(ResourceRow.id) == col(OutboxRow.resource_id),
            ),
        )
        .outerjoin(dependency, col(dependency.id) == col(OutboxRow.depends_on))
        .outerjoin(
            patient, and_(col(patient.resource_type) == "Patient", col(patient.id) == natural)
        )
        .where(col(OutboxRow.id) == bindparam("key"))
    )


_WRITE_INPUTS = _write_inputs_query()


@dataclass(frozen=True)
class WriteInputs:
    """What a write-back needs besides its row: None where the row's reference is gone."""

    trust_referral_id: str | None
    resource: dict[str, Any] | None
    dependency_state: str | None
    dependency_trust_id: str | None
    #: the FHIR Patient the trust's referral names; only read when asked for (``with_patient``)
    patient: dict[str, Any] | None = None


class OutboxLeases:
    """Mixed into ``Store``: claim, close, retry and cancel outbox rows."""

    engine: Any
    cipher: Any
    session: Callable[[], Any]

    def claim_due(
        self,
        connection: str,
        *,
        owner: str,
        lease_seconds: float,
        limit: int = 20,
        risk_only: bool = False,
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` due rows whose dependency is finished: risks, then oldest."""
        now = utcnow()
        params = {
            "p_connection": connection,
            "p_now": now,
            "p_limit": limit,
            "p_owner": owner,
            "p_expires": now + timedelta(seconds=lease_seconds),
        }
        with self.session() as s:
            if self.engine.dialect.name == "postgresql":
                rows = _claim_skip_locked(s, params, risk_only)
            else:  # one statement under SQLite's write lock: choose and take together
                statement = _claim_statement(skip_locked=False, risk_only=risk_only)
                rows = _scalars(s, statement, params)
        return sorted(rows, key=lambda row: (row.priority, row.created_at, row.id))

    def outbox_row(self, key: str) -> OutboxRow | None:
        """One outbox row by key."""
        with self.session() as s:
            row: OutboxRow | None = s.get(OutboxRow, key)
            return row

    def write_inputs(self, row: OutboxRow, *, with_patient: bool = False) -> WriteInputs:
        """What one write needs besides the row, in one read instead of one per table.

        ``with_patient`` also opens the referral's Patient, for a trust whose messages name
        the patient (HL7 v2 PID): it is read at push time and never copied into the row.
        """
        with self.engine.connect() as c:
            found = c.execute(_WRITE_INPUTS, {"key": row.id}).first()
        if found is None:
            return WriteInputs(None, None, None, None)
        referral, body, key_id, purged_at, dependency_state, dependency_trust_id = found[:6]
        resource = None
        if body is not None and purged_at is None:
            aad = resource_aad(row.resource_type, row.resource_id)
            resource = json.loads(self.cipher.open(body, key_id, aad))
        patient_id, patient_body, patient_key, patient_purged = found[6:]
        patient = None
        if with_patient and patient_body is not None and patient_purged is None:
            aad = resource_aad("Patient", patient_id)
            patient = json.loads(self.cipher.open(patient_body, patient_key, aad))
        return WriteInputs(referral, resource, dependency_state, dependency_trust_id, patient)

    def finish_attempt(
        self,
        key: str,
        *,
        state: str,
        owner: str | None = None,
        trust_id: str | None = None,
        error: str | None = None,
        error_code: str | None = None,
        next_attempt_at: datetime | None = None,
        count_attempt: bool = True,
        outcome: str | None = None,
    ) -> bool:
        """Close an attempt (done, pending with a time, or dead); False if no longer ours.

        A counted attempt is kept in the write history (``outcome`` defaults from the state:
        written, retry, dead); a write that ends (done or dead) also goes into the audit
        log. All three commit in one transaction, so the history never disagrees with the
        row.
        """
        now = utcnow()
        params = {
            "p_key": key,
            "p_owner": owner,
            "p_state": state,
            "p_counted": 1 if count_attempt else 0,
            "p_error": error,
            "p_error_code": error_code,
            "p_next_attempt_at": next_attempt_at or now,
            "p_now": now,
            "p_done_at": now if state == "done" else None,
            "p_trust_id": trust_id,
        }
        statement = _finish_statement(owner is not None, bool(trust_id), count_attempt)
        with self.engine.begin() as c:
            if not count_attempt:
                return bool(c.execute(statement, params).rowcount == 1)
            closed = c.execute(statement, params).first()
            if closed is None:
                return False
            _remember(c, closed, outcome or _OUTCOMES.get(state, state), owner, now)
            return True

    def expire_orphaned_leases(self, host: str, is_alive: Callable[[int], bool]) -> int:
        """Free rows leased by dead processes on this host, so a restart need not wait."""
        now = utcnow()
        freed = 0
        with self.session() as s:
            rows = s.exec(select(OutboxRow).where(OutboxRow.state == "in_flight")).all()
            for row in rows:
                owner_host, _, pid = (row.lease_owner or "").rpartition(":")
                if owner_host == host and pid.isdigit() and not is_alive(int(pid)):
                    row.lease_expires_at = now - timedelta(seconds=1)
                    s.add(row)
                    freed += 1
        return freed

    def retry_dead(
        self,
        keys: list[str] | None,
        connection: str | None = None,
        *,
        actor: str = "unknown",
        reason: str | None = None,
    ) -> list[str]:
        """Re-queue dead rows with fresh attempts (every dead row when ``keys`` is None)."""
        now = utcnow()
        with self.session() as s:
            query = select(OutboxRow).where(OutboxRow.state == "dead")
            if keys is not None:
                query = query.where(col(OutboxRow.id).in_(keys))
            if connection:
                query = query.where(OutboxRow.connection == connection)
            rows = s.exec(query).all()
            for row in rows:
                row.state, row.attempts, row.next_attempt_at, row.updated_at = (
                    "pending",
                    0,
                    now,
                    now,
                )
                s.add(row)
                add_audit(s, _entry("outbox.retry", actor, reason, row))
            return [row.id for row in rows]

    def cancel(self, key: str, reason: str, *, actor: str = "unknown") -> OutboxRow | None:
        """Cancel a row that is not written yet; done rows cannot be cancelled."""
        now = utcnow()
        with self.session() as s:
            row: OutboxRow | None = s.get(OutboxRow, key)
            if row is None or row.state in ("done", "cancelled"):
                return row
            row.state, row.last_error, row.last_error_code = "cancelled", reason, "cancelled"
            row.lease_owner, row.lease_expires_at, row.updated_at = None, None, now
            s.add(row)
            add_audit(s, _entry("outbox.cancel", actor, reason, row))
            return row


def _entry(
    action: str,
    actor: str,
    reason: str | None,
    row: OutboxRow | Row[Any],
    outcome: str | None = None,
    **extra: Any,
) -> AuditEntry:
    """An audit entry about one outbox row (its kind, and any codes, go in the detail)."""
    return AuditEntry(
        action,
        actor,
        reason,
        connection=row.connection,
        referral_id=row.referral_id,
        outbox_key=row.id,
        outcome=outcome,
        trust_id=row.trust_id,
        detail={"kind": row.kind, **{k: v for k, v in extra.items() if v is not None}},
    )


def _remember(
    c: Connection, closed: Row[Any], outcome: str, owner: str | None, now: datetime
) -> None:
    """The write history row, and the audit entry when the write has ended."""
    attempt = {
        "outbox_key": closed.id,
        "connection": closed.connection,
        "referral_id": closed.referral_id,
        "kind": closed.kind,
        "outcome": outcome,
        "worker": owner,
        "trust_id": closed.trust_id,
        "error_code": closed.last_error_code,
        "error": closed.last_error,
        "at": now,
    }
    c.execute(insert(_ATTEMPTS), attempt)
    if closed.state in ("done", "dead"):
        actor = engine_actor(owner or "unknown")
        entry = _entry(
            "trust.write", actor, None, closed, outcome, error_code=closed.last_error_code
        )
        c.execute(insert(_AUDIT), _audit_values(entry, now))


def _audit_values(entry: AuditEntry, now: datetime) -> dict[str, Any]:
    """The audit row ``add_audit`` would add, as Core values (same columns, same JSON)."""
    return {
        "at": now,
        "actor": entry.actor,
        "action": entry.action,
        "reason": entry.reason,
        "connection": entry.connection,
        "referral_id": entry.referral_id,
        "outbox_key": entry.outbox_key,
        "patient_id": entry.patient_id,
        "outcome": entry.outcome,
        "trust_id": entry.trust_id,
        "detail": json.dumps(entry.detail, sort_keys=True, separators=(",", ":")),
    }
