"""Risk events: each followed from collect until the trust acknowledges it or staff resolve it.

A risk is "open" until then. The escalation (``observability.alerts``) reads the open ones
with their write-back's state, and records here each alert it sends, so the repeat
schedule survives a restart and two daemons sharing one database do not both page for
the same interval. Resolving a risk by hand is audited with the operator's reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from ehr_bridge.errors import TerminalError
from ehr_bridge.store.audit import AuditEntry, add_audit
from ehr_bridge.store.models import OutboxRow, ReferralRow, RiskEventRow, utcnow
from ehr_bridge.store.values import NewRiskEvent

Row = dict[str, Any]


@dataclass(frozen=True)
class RiskView:
    """One risk as support staff and the escalation see it: ids, codes and times only."""

    id: str
    connection: str
    referral_id: str | None
    trust_referral_id: str | None
    origin: str
    level: str
    reason: str
    raised_at: datetime
    created_at: datetime
    #: the write-back's state (pending, in_flight, done, dead, cancelled), None: none queued
    outbox_state: str | None
    outbox_key: str | None
    #: the trust's id of the risk item once written
    trust_id: str | None
    delivered_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    last_alert_at: datetime | None
    alerts_sent: int

    @property
    def open(self) -> bool:
        """Nobody at the trust has acknowledged it and no operator has resolved it."""
        return self.acknowledged_at is None and self.resolved_at is None

    @property
    def failed(self) -> bool:
        """It cannot reach the trust as things stand: refused, dead-lettered or cancelled."""
        return self.origin != "session" or self.outbox_state in (None, "dead", "cancelled")


def risk_row(connection: str, risk: NewRiskEvent, now: datetime) -> Row:
    """A new ``risk_event`` row (a core insert skips the model's Python-side defaults)."""
    return {
        "id": risk.id,
        "connection": connection,
        "referral_id": risk.referral_id,
        "outbox_key": risk.outbox_key,
        "origin": risk.origin,
        "level": risk.level,
        "reason": risk.reason,
        "raised_at": risk.raised_at,
        "created_at": now,
        "alerts_sent": 0,
    }


class RiskEvents:
    """Mixed into ``Store``: read and follow risk events."""

    session: Callable[[], Any]

    def risks(
        self,
        connection: str | None = None,
        *,
        referral_id: str | None = None,
        open_only: bool = False,
    ) -> list[RiskView]:
        """Risk events, oldest first, with their write-back's state."""
        query = (
            select(RiskEventRow, OutboxRow, ReferralRow.trust_referral_id)
            .outerjoin(OutboxRow, col(OutboxRow.id) == col(RiskEventRow.outbox_key))
            .outerjoin(ReferralRow, col(ReferralRow.id) == col(RiskEventRow.referral_id))
            .order_by(col(RiskEventRow.created_at), col(RiskEventRow.id))
        )
        if connection is not None:
            query = query.where(RiskEventRow.connection == connection)
        if referral_id is not None:
            query = query.where(RiskEventRow.referral_id == referral_id)
        if open_only:
            query = query.where(
                col(RiskEventRow.acknowledged_at).is_(None), col(RiskEventRow.resolved_at).is_(None)
            )
        with self.session() as s:
            return [_view(risk, outbox, trust_ref) for risk, outbox, trust_ref in s.exec(query)]

    def record_acknowledgement(self, risk_id: str, at: datetime, by: str | None) -> bool:
        """The trust says someone has seen the item; False if it was acknowledged before."""
        with self.session() as s:
            row: RiskEventRow | None = s.get(RiskEventRow, risk_id)
            if row is None or row.acknowledged_at is not None:
                return False
            row.acknowledged_at, row.acknowledged_by = at, by
            s.add(row)
            add_audit(s, _entry("risk.acknowledged", "trust", None, row, {"by": by}))
            return True

    def resolve_risk(self, risk_id: str, *, actor: str, reason: str) -> RiskView:
        """An operator closes a risk (confirmed with the duty team by phone, say); audited."""
        if not reason.strip():
            raise TerminalError("resolving a risk needs a reason", code="reason_required")
        with self.session() as s:
            row: RiskEventRow | None = s.get(RiskEventRow, risk_id)
            if row is None:
                raise TerminalError("no risk with this id", code="not_found")
            if row.resolved_at is None:
                row.resolved_at, row.resolved_by = utcnow(), actor
                s.add(row)
                add_audit(s, _entry("risk.resolve", actor, reason, row, {"level": row.level}))
        [view] = [v for v in self.risks(row.connection) if v.id == risk_id]
        return view

    def claim_risk_alert(self, risk_id: str, previous: datetime | None, at: datetime) -> bool:
        """Take the next alert for this risk: False if another daemon sent it since ``previous``.

        A compare-and-set on ``last_alert_at``, so of two daemons judging the same risk at
        the same time exactly one pages.
        """
        return self._swap_alert_time(risk_id, previous, at, +1)

    def undo_risk_alert(self, risk_id: str, previous: datetime | None, at: datetime) -> None:
        """No notifier took the alert: put the schedule back, so the next look sends it."""
        self._swap_alert_time(risk_id, at, previous, -1)

    def _swap_alert_time(
        self, risk_id: str, expected: datetime | None, new: datetime | None, step: int
    ) -> bool:
        table = RiskEventRow.__table__  # type: ignore[attr-defined]
        last = table.c.last_alert_at
        matches = last.is_(None) if expected is None else last == expected
        statement = (
            update(table)
            .where(table.c.id == risk_id, matches)
            .values(last_alert_at=new, alerts_sent=table.c.alerts_sent + step)
        )
        with self.session() as s:
            result = s.exec(statement)
            return bool(result.rowcount == 1)


def _entry(
    action: str, actor: str, reason: str | None, row: RiskEventRow, detail: dict[str, Any]
) -> AuditEntry:
    return AuditEntry(
        action,
        actor,
        reason,
        connection=row.connection,
        referral_id=row.referral_id,
        outbox_key=row.outbox_key,
        detail={"risk": row.id, **detail},
    )


def _view(risk: RiskEventRow, outbox: OutboxRow | None, trust_ref: str | None) -> RiskView:
    return RiskView(
        id=risk.id,
        connection=risk.connection,
        referral_id=risk.referral_id,
        trust_referral_id=trust_ref,
        origin=risk.origin,
        level=risk.level,
        reason=risk.reason,
        raised_at=risk.raised_at,
        created_at=risk.created_at,
        outbox_state=outbox.state if outbox is not None else None,
        outbox_key=risk.outbox_key,
        trust_id=outbox.trust_id if outbox is not None else None,
        delivered_at=outbox.done_at if outbox is not None and outbox.state == "done" else None,
        acknowledged_at=risk.acknowledged_at,
        acknowledged_by=risk.acknowledged_by,
        resolved_at=risk.resolved_at,
        resolved_by=risk.resolved_by,
        last_alert_at=risk.last_alert_at,
        alerts_sent=risk.alerts_sent,
    )
