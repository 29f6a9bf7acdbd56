"""Reconcile: read back from the trust what we wrote, and report drift per referral.

For each referral, every kind of item the connection writes is listed at the trust and
matched to our outbox by client reference. Each item we wrote is then

- ``in_sync``: the trust holds it as we wrote it;
- ``missing``: we wrote it, the trust no longer has it (deleted there);
- ``changed``: the trust holds it with other values (edited there); the names of the
  fields that differ are reported, never their values;
- ``unexpected``: the trust holds something our outbox does not expect there (a write
  we dead-lettered or cancelled that landed after all, a duplicate, or a client
  reference of ours we never queued).

Items not written yet are ``pending``, dead letters the trust does not hold are ``dead``
(see `outbox list --state dead`), and an item whose payload cannot be rebuilt right now
(its care contact is being written again) is ``unchecked``; none of these is drift.

Repairs are opt-in: ``missing`` is re-queued (push writes it again), a landed dead
letter is adopted (takes the trust's id), and ``changed`` is overwritten only with
``force``, through the trust adapter's update capability. Each repair is audited with
the operator's name and reason in the same transaction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ehr_bridge.adapters.base import TrustItem, TrustReader, TrustUpdater
from ehr_bridge.adapters.registry import WRITE_KINDS
from ehr_bridge.errors import ConfigError, EhrBridgeError
from ehr_bridge.store import OutboxRow, ReferralRow, Store
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.push import build_write_item

DRIFT = ("missing", "changed", "unexpected")
#: referrals in a row the trust may fail to answer before a run gives up on it
GIVE_UP_AFTER = 3
_OUR_REFERENCE = re.compile(r"[0-9a-f]{32}")
_IGNORED_FIELDS = frozenset({"client_reference"})


@dataclass(frozen=True)
class RepairOptions:
    """What reconcile may change: nothing (a dry run) unless ``repair``."""

    repair: bool = False
    force: bool = False
    actor: str = "unknown"
    reason: str = "reconcile"


@dataclass
class Finding:
    """One item's state at the trust, and what (if anything) was done about it."""

    kind: str
    state: str  # in_sync | missing | changed | unexpected | pending | dead | unchecked
    outbox_key: str | None
    trust_id: str | None
    fields: list[str] = field(default_factory=list)
    note: str = ""
    repair: str | None = None


@dataclass
class ReferralReport:
    """The reconciliation of one referral."""

    referral_id: str
    trust_referral_id: str
    connection: str
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None

    @property
    def verdict(self) -> str:
        """``in sync``, ``queued``, ``drift`` or ``error``.

        ``queued``: no drift is left, but something was re-queued here and is not at the
        trust until a push writes it (the next reconcile says ``in sync`` once it is).
        Items already waiting to be written are in sync.
        """
        if self.error:
            return "error"
        if self.drift:
            return "drift"
        return "queued" if any(f.repair == "requeued" for f in self.findings) else "in sync"

    @property
    def drift(self) -> list[Finding]:
        """The findings that are drift and were not put right here."""
        return [f for f in self.findings if f.state in DRIFT and not _fixed(f)]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for `reconcile --json`."""
        return {
            "referral_id": self.referral_id,
            "trust_referral_id": self.trust_referral_id,
            "connection": self.connection,
            "verdict": self.verdict,
            "error": self.error,
            "findings": [f.__dict__ for f in self.findings if f.state != "in_sync"],
            "in_sync": sum(1 for f in self.findings if f.state == "in_sync"),
        }


def _fixed(finding: Finding) -> bool:
    return finding.repair in ("requeued", "adopted", "overwritten")


def require_reader(conn: Connection) -> TrustReader:
    """The connection's trust adapter as a reader, or a ConfigError naming the gap."""
    if "read_items" not in conn.capabilities or not isinstance(conn.source, TrustReader):
        raise ConfigError(
            "the trust adapter cannot read items back (capability read_items),"
            " so this connection cannot be reconciled (`ehr-bridge adapters list` says"
            " what to do instead)",
            key=f"connection {conn.name}",
        )
    return conn.source


def referrals_to_check(
    store: Store, connection: str, *, referral_id: str | None = None, since: datetime | None = None
) -> list[ReferralRow]:
    """Referrals with write-backs (changed since ``since``), or just the one asked for."""
    rows = store.outbox_rows(connection=connection, referral_id=referral_id)
    wanted = {r.referral_id for r in rows if since is None or _at_or_after(r.updated_at, since)}
    referrals = [store.referral(rid) for rid in sorted(wanted)]
    return [r for r in referrals if r is not None]


def _at_or_after(moment: datetime, since: datetime) -> bool:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=since.tzinfo)
    return aware >= since


def reconcile(
    conn: Connection,
    store: Store,
    referrals: Iterable[ReferralRow],
    options: RepairOptions,
    on_done: Callable[[ReferralReport], None] | None = None,
) -> list[ReferralReport]:
    """Reconcile each referral in turn; ``on_done`` is told after each (progress).

    When the trust cannot be read for ``GIVE_UP_AFTER`` referrals in a row it is taken to
    be down: the run stops there rather than waiting out every remaining referral's retries.
    """
    reader = require_reader(conn)
    reports: list[ReferralReport] = []
    for row in referrals:
        report = reconcile_referral(conn, store, reader, row, options)
        reports.append(report)
        if on_done is not None:
            on_done(report)
        if len(reports) >= GIVE_UP_AFTER and all(r.error for r in reports[-GIVE_UP_AFTER:]):
            break
    return reports


def reconcile_referral(
    conn: Connection, store: Store, reader: TrustReader, row: ReferralRow, options: RepairOptions
) -> ReferralReport:
    """Compare one referral's write-backs with what the trust holds, and repair if asked."""
    report = ReferralReport(row.id, row.trust_referral_id, row.connection)
    outbox = store.outbox_rows(referral_id=row.id)
    try:
        for kind in (k for k in WRITE_KINDS if conn.writes(k)):
            items = reader.list_items(row.trust_referral_id, kind)
            rows = [o for o in outbox if o.kind == kind]
            report.findings += _compare(conn, store, kind, rows, items)
    except EhrBridgeError as exc:
        report.error = exc.safe_message
        return report
    if options.repair:
        for finding in report.findings:
            _repair(conn, store, finding, options)
    return report


def _compare(
    conn: Connection, store: Store, kind: str, rows: list[OutboxRow], items: list[TrustItem]
) -> list[Finding]:
    by_reference: dict[str, list[TrustItem]] = {}
    for item in items:
        if item.client_reference:
            by_reference.setdefault(item.client_reference, []).append(item)
    checked = (_one(conn, store, row, by_reference.pop(row.id, [])) for row in rows)
    findings = [f for f in checked if f is not None]
    for reference, strays in sorted(by_reference.items()):
        if _OUR_REFERENCE.fullmatch(reference):
            note = "carries a client reference of ours that was never queued"
            findings.append(Finding(kind, "unexpected", reference, strays[0].trust_id, note=note))
    return findings


def _one(conn: Connection, store: Store, row: OutboxRow, found: list[TrustItem]) -> Finding | None:
    finding = Finding(row.kind, "in_sync", row.id, row.trust_id)
    if row.state in ("pending", "in_flight"):
        finding.state, finding.note = "pending", "not written yet"
    elif row.state == "dead":
        finding.state = "unexpected" if found else "dead"
        finding.note = "landed although dead-lettered" if found else row.last_error or ""
        finding.trust_id = found[0].trust_id if found else None
    elif row.state == "cancelled":
        if not found:
            return None
        finding.state, finding.trust_id = "unexpected", found[0].trust_id
        finding.note = "at the trust although cancelled: remove it there if it must not stay"
    elif not found:
        finding.state, finding.note = "missing", "deleted at the trust"
    else:
        _check_values(conn, store, row, found[0], finding)
        if len(found) > 1:
            finding.state, finding.note = "unexpected", f"{len(found)} copies at the trust"
    return finding


def _check_values(
    conn: Connection, store: Store, row: OutboxRow, item: TrustItem, finding: Finding
) -> None:
    finding.trust_id = item.trust_id
    try:
        payload = build_write_item(conn, store, row).payload
    except EhrBridgeError as exc:
        finding.state, finding.note = "unchecked", f"cannot be compared now ({exc.code})"
        return
    finding.fields = sorted(
        name
        for name, value in payload.items()
        if name not in _IGNORED_FIELDS and _canonical(value) != _canonical(item.fields.get(name))
    )
    if finding.fields:
        finding.state, finding.note = "changed", "edited at the trust"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _repair(conn: Connection, store: Store, finding: Finding, options: RepairOptions) -> None:
    key, reason = finding.outbox_key, options.reason
    if key is None:
        return
    if finding.state == "missing":
        done = store.requeue(key, actor=options.actor, reason=reason, trust_id_was=finding.trust_id)
        finding.repair = "requeued" if done else "not requeued (row changed meanwhile)"
    elif finding.state == "unexpected" and finding.note.startswith("landed") and finding.trust_id:
        done = store.adopt(key, finding.trust_id, actor=options.actor, reason=reason)
        finding.repair = "adopted" if done else "not adopted (row changed meanwhile)"
    elif finding.state == "changed":
        finding.repair = _overwrite(conn, store, finding, options) if options.force else None
        finding.note += "" if options.force else "; left as is (--force overwrites)"


def _overwrite(conn: Connection, store: Store, finding: Finding, options: RepairOptions) -> str:
    if "update_items" not in conn.capabilities or not isinstance(conn.writer, TrustUpdater):
        return "not overwritten: the trust adapter cannot update items (update_items)"
    row = store.outbox_row(finding.outbox_key or "")
    if row is None or finding.trust_id is None:
        return "not overwritten: the write-back is gone"
    try:
        conn.writer.update(build_write_item(conn, store, row), finding.trust_id)
    except EhrBridgeError as exc:
        _record(store, row, finding, options, "update_failed", exc.code)
        return f"overwrite failed ({exc.code})"
    _record(store, row, finding, options, "updated", None)
    return "overwritten"


def _record(
    store: Store,
    row: OutboxRow,
    finding: Finding,
    options: RepairOptions,
    outcome: str,
    error_code: str | None,
) -> None:
    store.record_update(
        row.id,
        actor=options.actor,
        reason=options.reason,
        outcome=outcome,
        error_code=error_code,
        fields=finding.fields,
    )
