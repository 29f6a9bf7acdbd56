"""Outbox leasing: how workers (threads or daemons) share write-backs without doubling any.

A row is claimed by moving it to ``in_flight`` with an owner and a lease expiry, only if
it is still due. On PostgreSQL the candidates are locked with ``FOR UPDATE SKIP LOCKED``
so daemons never wait on, or take, each other's rows. On SQLite each claim is a single
compare-and-set ``UPDATE`` (SQLite serialises writers). A lapsed lease is claimable again
and counts as an attempt whose outcome is unknown, so the next worker reads before writing.
Closing an attempt is owner-checked: a worker whose lease was taken over cannot overwrite
the new owner's outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from ehr_bridge.store.audit import AuditEntry, add_audit, engine_actor
from ehr_bridge.store.lineage import add_attempt
from ehr_bridge.store.models import OutboxRow, utcnow

FINISHED = ("done", "dead", "cancelled")
_OUTCOMES = {"done": "written", "pending": "retry", "dead": "dead"}


def _due(now: datetime) -> Any:
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


def _claim_values(owner: str, now: datetime, lease_seconds: float) -> dict[str, Any]:
    return {
        "state": "in_flight",
        "lease_owner": owner,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "updated_at": now,
        # a lapsed lease's attempt has an unknown outcome: count it
        "attempts": case(
            (col(OutboxRow.state) == "in_flight", col(OutboxRow.attempts) + 1),
            else_=col(OutboxRow.attempts),
        ),
    }


class OutboxLeases:
    """Mixed into ``Store``: claim, close, retry and cancel outbox rows."""

    engine: Any
    session: Callable[[], Any]

    def claim_due(
        self, connection: str, *, owner: str, lease_seconds: float, limit: int = 20
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` due rows whose dependency is finished."""
        now = utcnow()
        if self.engine.dialect.name == "postgresql":
            return self._claim_skip_locked(connection, owner, lease_seconds, limit, now)
        return self._claim_compare_and_set(connection, owner, lease_seconds, limit, now)

    def _candidates(self, connection: str, now: datetime, limit: int) -> Any:
        return (
            select(OutboxRow)
            .where(OutboxRow.connection == connection, _due(now), _dependency_finished())
            .order_by(col(OutboxRow.created_at), col(OutboxRow.id))
            .limit(limit)
        )

    def _claim_skip_locked(
        self, connection: str, owner: str, lease_seconds: float, limit: int, now: datetime
    ) -> list[OutboxRow]:
        with self.session() as s:
            query = self._candidates(connection, now, limit).with_for_update(skip_locked=True)
            ids = [row.id for row in s.exec(query).all()]
            if not ids:
                return []
            s.exec(
                update(OutboxRow)
                .where(col(OutboxRow.id).in_(ids))
                .values(**_claim_values(owner, now, lease_seconds))
                .execution_options(synchronize_session=False)
            )
            return self._reload(s, ids)

    def _claim_compare_and_set(
        self, connection: str, owner: str, lease_seconds: float, limit: int, now: datetime
    ) -> list[OutboxRow]:
        with self.session() as s:
            ids = [row.id for row in s.exec(self._candidates(connection, now, limit * 2)).all()]
        claimed: list[str] = []
        for key in ids:
            if len(claimed) >= limit:
                break
            with self.session() as s:
                result = s.exec(
                    update(OutboxRow)
                    .where(col(OutboxRow.id) == key, _due(now))
                    .values(**_claim_values(owner, now, lease_seconds))
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount == 1:
                    claimed.append(key)
        with self.session() as s:
            return self._reload(s, claimed)

    def outbox_row(self, key: str) -> OutboxRow | None:
        """One outbox row by key."""
        with self.session() as s:
            row: OutboxRow | None = s.get(OutboxRow, key)
            return row

    @staticmethod
    def _reload(s: Session, ids: list[str]) -> list[OutboxRow]:
        rows = s.exec(select(OutboxRow).where(col(OutboxRow.id).in_(ids))).all()
        order = {key: n for n, key in enumerate(ids)}
        return sorted(rows, key=lambda row: order[row.id])

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
        log. Both commit with the outcome, so the history never disagrees with the row.
        """
        now = utcnow()
        values: dict[str, Any] = {
            "state": state,
            "lease_owner": None,
            "lease_expires_at": None,
            "attempts": col(OutboxRow.attempts) + (1 if count_attempt else 0),
            "last_error": error,
            "last_error_code": error_code,
            "next_attempt_at": next_attempt_at or now,
            "updated_at": now,
            "done_at": now if state == "done" else None,
        }
        if trust_id:
            values["trust_id"] = trust_id
        condition = col(OutboxRow.id) == key
        if owner is not None:
            condition = and_(condition, col(OutboxRow.lease_owner) == owner)
        with self.session() as s:
            result = s.exec(
                update(OutboxRow)
                .where(condition)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                return False
            if count_attempt:
                row = s.get(OutboxRow, key)
                _remember(s, row, outcome or _OUTCOMES.get(state, state), owner, error_code, error)
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
        self, keys: list[str] | None, connection: str | None = None, *, actor: str = "unknown"
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
                add_audit(s, _entry("outbox.retry", actor, None, row))
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
    row: OutboxRow,
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
    s: Session,
    row: OutboxRow | None,
    outcome: str,
    owner: str | None,
    error_code: str | None,
    error: str | None,
) -> None:
    """The write history row, and the audit entry when the write has ended."""
    if row is None:
        return
    add_attempt(
        s, row, outcome, worker=owner, trust_id=row.trust_id, error_code=error_code, error=error
    )
    if row.state in ("done", "dead"):
        actor = engine_actor(owner or "unknown")
        add_audit(s, _entry("trust.write", actor, None, row, outcome, error_code=error_code))
