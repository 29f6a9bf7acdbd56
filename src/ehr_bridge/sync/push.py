"""Push: write due outbox rows into the trust record, exactly once in effect.

Rows are leased, so a crashed worker's rows come back after the lease. Any row that
has been tried before (its outcome may be unknown) first asks the trust whether it
already holds the item by our client reference, and only writes when it does not.
A failing row is rescheduled with backoff or dead-lettered; it never stops the others.
Every attempt's outcome goes into the write history, and every write that ends (written,
found already there, dead) into the audit log, with the outcome itself.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ehr_bridge.adapters.base import WriteItem, WriteReceipt
from ehr_bridge.errors import (
    ConnectionStopError,
    EhrBridgeError,
    MappingError,
    TerminalError,
    TransientError,
)
from ehr_bridge.store import OutboxRow, Store, utcnow
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.events import WriteFinished, publish

log = logging.getLogger(__name__)


@dataclass
class PushCounts:
    """What one push run did."""

    written: int = 0
    already_present: int = 0
    retried_later: int = 0
    dead: int = 0


def push(conn: Connection, store: Store, stop: threading.Event | None = None) -> PushCounts:
    """Write every due row, claiming a batch at a time until none is due."""
    counts = PushCounts()
    while not (stop and stop.is_set()):
        rows = store.claim_due(conn.name, owner=conn.owner, lease_seconds=conn.lease_seconds)
        if not rows:
            break
        for index, row in enumerate(rows):
            if stop and stop.is_set():
                _release(store, rows[index:], conn.owner)
                return counts
            try:
                _push_one(conn, store, row, counts)
            except ConnectionStopError:
                _release(store, rows[index:], conn.owner)
                raise
    return counts


def _release(store: Store, rows: list[OutboxRow], owner: str) -> None:
    for row in rows:
        store.finish_attempt(
            row.id, state="pending", owner=owner, count_attempt=False, error=row.last_error
        )


def _push_one(conn: Connection, store: Store, row: OutboxRow, counts: PushCounts) -> None:
    clock = time.monotonic()
    try:
        item = build_write_item(conn, store, row)
        receipt = _find_or_write(conn, row, item)
    except TransientError as exc:
        outcome = _retry_or_bury(conn, store, row, exc, counts)
        publish(WriteFinished(conn.name, row.kind, outcome, time.monotonic() - clock))
        return
    except (TerminalError, MappingError) as exc:
        _bury(store, row, exc, counts, conn.owner)
        publish(WriteFinished(conn.name, row.kind, "dead", time.monotonic() - clock))
        return
    outcome = "already_present" if receipt.already_present else "written"
    publish(WriteFinished(conn.name, row.kind, outcome, time.monotonic() - clock))
    counts.written += 0 if receipt.already_present else 1
    counts.already_present += 1 if receipt.already_present else 0
    store.finish_attempt(
        row.id, state="done", owner=conn.owner, trust_id=receipt.trust_id, outcome=outcome
    )
    log.info(
        "written to trust",
        extra={
            "connection": conn.name,
            "outbox": row.id,
            "kind": row.kind,
            "referral": row.referral_id,
        },
    )


def _find_or_write(conn: Connection, row: OutboxRow, item: WriteItem) -> WriteReceipt:
    if row.attempts > 0 and "find_by_reference" in conn.capabilities:
        found = conn.writer.find(item)
        if found is not None:
            return found
    return conn.writer.write(item)


def build_write_item(conn: Connection, store: Store, row: OutboxRow) -> WriteItem:
    """Map a row's stored resource to the trust's payload (also used by tests and repair)."""
    referral = store.referral(row.referral_id)
    resource = store.resource(row.resource_type, row.resource_id)
    if referral is None or resource is None:
        raise TerminalError(f"outbox {row.id}: its referral or resource is missing", code="missing")
    context: dict[str, Any] = json.loads(row.context)
    context.update(client_reference=row.id, trust_referral_id=referral.trust_referral_id)
    context["care_contact_id"] = _dependency_trust_id(store, row)
    payload = conn.mapping.outbound(row.kind, resource, context)
    return WriteItem(row.kind, referral.trust_referral_id, row.id, payload)


def _dependency_trust_id(store: Store, row: OutboxRow) -> str | None:
    if row.depends_on is None:
        return None
    dependency = store.outbox_row(row.depends_on)
    if dependency is not None and dependency.state != "done":
        raise TerminalError(
            f"outbox {row.id}: the care contact it belongs to was not written ({dependency.state})",
            code="dependency_failed",
        )
    return dependency.trust_id if dependency else None


def _retry_or_bury(
    conn: Connection, store: Store, row: OutboxRow, exc: TransientError, counts: PushCounts
) -> str:
    attempts = row.attempts + 1
    if conn.retry.exhausted(attempts):
        if exc.ambiguous and _landed_after_all(conn, store, row, counts):
            return "already_present"
        _bury(store, row, exc, counts, conn.owner)
        return "dead"
    delay = conn.retry.delay(attempts, exc.retry_after)
    store.finish_attempt(
        row.id,
        state="pending",
        owner=conn.owner,
        error=exc.safe_message,
        error_code=exc.code,
        next_attempt_at=utcnow() + timedelta(seconds=delay),
    )
    counts.retried_later += 1
    log.warning(
        "write failed, will retry",
        extra={
            "connection": conn.name,
            "outbox": row.id,
            "attempt": attempts,
            "delay_s": round(delay, 1),
        },
    )
    return "retry"


def _landed_after_all(conn: Connection, store: Store, row: OutboxRow, counts: PushCounts) -> bool:
    """Before burying an ambiguous last attempt, ask once more: it may have landed."""
    if "find_by_reference" not in conn.capabilities:
        return False
    try:
        found = conn.writer.find(build_write_item(conn, store, row))
    except EhrBridgeError:
        return False
    if found is None:
        return False
    store.finish_attempt(
        row.id, state="done", owner=conn.owner, trust_id=found.trust_id, outcome="already_present"
    )
    counts.already_present += 1
    return True


def _bury(
    store: Store, row: OutboxRow, exc: EhrBridgeError, counts: PushCounts, owner: str
) -> None:
    store.finish_attempt(
        row.id, state="dead", owner=owner, error=exc.safe_message, error_code=exc.code
    )
    counts.dead += 1
    log.error("write dead-lettered", extra={"outbox": row.id, "kind": row.kind, "code": exc.code})
