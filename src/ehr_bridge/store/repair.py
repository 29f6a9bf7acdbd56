"""Repairs an operator makes after `reconcile`, each committed with its audit entry.

- ``requeue``: an item we wrote is missing at the trust (deleted there). The row goes back
  to pending with fresh attempts and no trust id, so push writes it again without first
  finding it (there is nothing to find).
- ``adopt``: the trust holds an item our outbox gave up on (dead) or has not finished; the
  row takes the trust's id and is done, so nothing writes it twice.
- ``record_update``: a forced overwrite of an item changed at the trust, and its outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ehr_bridge.store.audit import add_audit
from ehr_bridge.store.lineage import add_attempt
from ehr_bridge.store.models import OutboxRow, utcnow
from ehr_bridge.store.outbox import _entry

#: outbox states each repair may start from
REQUEUE_FROM = frozenset({"done", "dead"})
ADOPT_FROM = frozenset({"dead", "pending"})


class Repairs:
    """Mixed into ``Store``: operator repairs of outbox rows."""

    session: Callable[[], Any]

    def requeue(self, key: str, *, actor: str, reason: str, **detail: Any) -> OutboxRow | None:
        """Queue a written item again (missing at the trust); None if the row cannot be."""
        now = utcnow()
        with self.session() as s:
            row: OutboxRow | None = s.get(OutboxRow, key)
            if row is None or row.state not in REQUEUE_FROM:
                return None
            add_audit(s, _entry("reconcile.requeue", actor, reason, row, "queued", **detail))
            row.state, row.attempts, row.trust_id, row.done_at = "pending", 0, None, None
            row.next_attempt_at, row.updated_at, row.last_error = now, now, None
            row.last_error_code = None
            s.add(row)
            return row

    def adopt(self, key: str, trust_id: str, *, actor: str, reason: str) -> OutboxRow | None:
        """Take the trust's copy as ours (it landed after all); None if the row cannot be."""
        now = utcnow()
        with self.session() as s:
            row: OutboxRow | None = s.get(OutboxRow, key)
            if row is None or row.state not in ADOPT_FROM:
                return None
            row.state, row.trust_id, row.done_at, row.updated_at = "done", trust_id, now, now
            row.last_error, row.last_error_code = None, None
            s.add(row)
            add_attempt(s, row, "adopted", worker=actor, trust_id=trust_id)
            add_audit(s, _entry("reconcile.adopt", actor, reason, row, "adopted"))
            return row

    def record_update(
        self,
        key: str,
        *,
        actor: str,
        reason: str,
        outcome: str,
        error_code: str | None = None,
        fields: list[str] | None = None,
    ) -> None:
        """Remember a forced overwrite at the trust (``outcome``: updated or update_failed)."""
        with self.session() as s:
            row: OutboxRow | None = s.get(OutboxRow, key)
            if row is None:
                return
            add_attempt(s, row, outcome, worker=actor, trust_id=row.trust_id, error_code=error_code)
            names = sorted(fields) if fields else None
            entry = _entry(
                "reconcile.overwrite",
                actor,
                reason,
                row,
                outcome,
                error_code=error_code,
                fields=names,
            )
            add_audit(s, entry)
