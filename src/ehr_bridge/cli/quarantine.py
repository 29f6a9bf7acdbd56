"""`quarantine retry` and `quarantine dismiss`: triage of records set aside.

A referral set aside because its trust record was malformed is fixed *at the trust*
(ehr-bridge never fixes data); `retry` then pulls that one record again at once instead
of waiting for the next pull. A provider bundle set aside because of something on our
side (its referral was not pulled yet, its patient was merged) is checked again from the
stored copy. `dismiss` closes an entry that needs no fix. Both need ``--reason`` and go
into the audit log with it.
"""

from __future__ import annotations

from typing import Any

import typer

from ehr_bridge.cli.context import EXIT_FAILED, EXIT_NOT_FOUND, config_error, fail, obj, print_json
from ehr_bridge.cli.support import connection_named, given_reason, say, store_of
from ehr_bridge.cli.text import markup_safe
from ehr_bridge.errors import ConfigError, EhrBridgeError
from ehr_bridge.store import AuditEntry, QuarantineRow, Store, operator
from ehr_bridge.sync.collect import collect_again
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.pull import pull_one

#: what each outcome tells the support user, and whether the command failed
OUTCOMES = {
    "stored": ("the record now passes and is stored; deliver sends it next", False),
    "still_failing": ("the record still fails", True),
    "unchanged": ("the trust record has not changed since it was set aside", True),
    "not_found": ("the trust no longer has this record", True),
    "payload_gone": ("the stored copy was purged; wait for the provider to send it again", True),
}


def _open_entry(store: Store, entry_id: int) -> QuarantineRow:
    row = store.quarantine_entry(entry_id)
    if row is None:
        raise fail(f"no quarantine entry {entry_id} (try `quarantine list`)", EXIT_NOT_FOUND)
    if row.state != "open":
        raise fail(f"quarantine entry {entry_id} is {row.state}; only open entries can change")
    return row


def retry_entry(ctx: typer.Context, entry_id: int, reason: str, as_json: bool) -> None:
    """Try an open entry again; exit 1 if it still cannot be stored."""
    store = store_of(ctx)
    row = _open_entry(store, entry_id)
    conn = connection_named(ctx, row.connection)
    try:
        outcome, why = _retry(conn, store, row)
    except ConfigError as exc:
        raise config_error(exc) from None
    except EhrBridgeError as exc:
        raise fail(f"the trust could not be asked: {exc.safe_message}") from None
    audit = AuditEntry(
        "quarantine.retry",
        operator(),
        reason,
        connection=row.connection,
        outcome=outcome,
        detail={"entry": entry_id, "record": row.record_ref, "source": row.source},
    )
    store.record_audit(audit)
    _report(ctx, row, outcome, why, as_json)


def _retry(conn: Connection, store: Store, row: QuarantineRow) -> tuple[str, str | None]:
    if row.source == "referral":
        counts = pull_one(conn, store, row.record_ref)
        if counts.seen == 0:
            return "not_found", None
        if counts.stored:
            return "stored", None
        if counts.unchanged:
            return "unchanged", row.reason
        newest = store.quarantine_for(row.connection, row.record_ref)[-1]
        return "still_failing", f"{newest.field or '-'}: {newest.reason} (entry {newest.id})"
    payload = store.quarantine_payload(row.id or 0)
    if payload is None:
        return "payload_gone", None
    error = collect_again(conn, store, row.record_ref, payload)
    if error is None:
        return "stored", None
    return "still_failing", f"{error.field or '-'}: {error.safe_message}"


def _report(
    ctx: typer.Context, row: QuarantineRow, outcome: str, reason: str | None, as_json: bool
) -> None:
    message, failed = OUTCOMES[outcome]
    data: dict[str, Any] = {"entry": row.id, "record": row.record_ref, "outcome": outcome}
    data["message"], data["reason"] = message, reason
    if as_json:
        print_json(data)
    else:
        detail = f": {reason}" if reason else ""
        say(obj(ctx).console, f"entry {row.id} ({markup_safe(row.record_ref)}): {message}{detail}")
    if failed:
        raise typer.Exit(EXIT_FAILED)


def dismiss_entry(ctx: typer.Context, entry_id: int, reason: str) -> None:
    """Close an open entry with the reason; it stays listed under `quarantine list --all`."""
    reason = given_reason(reason)
    store = store_of(ctx)
    row = _open_entry(store, entry_id)
    detail = {"entry": entry_id, "record": row.record_ref, "source": row.source}
    audit = AuditEntry(
        "quarantine.dismiss", operator(), reason, connection=row.connection, detail=detail
    )
    if not store.close_quarantine_entry(entry_id, "dismissed", audit):
        raise fail(f"quarantine entry {entry_id} changed meanwhile; look again")
    typer.echo(f"dismissed quarantine entry {entry_id} ({row.record_ref})")
