"""`ehr-bridge audit list`: who did what, when and why, and every write to a trust record.

The log is append-only (the database refuses to change or delete entries). It names
records by our ids and the trust's ids and never holds note text or patient details, so
it can be shown to anyone allowed to run the CLI.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ehr_bridge.cli import tables
from ehr_bridge.cli.context import EXIT_NOT_FOUND, fail, obj, print_json, print_table
from ehr_bridge.cli.screen import when, zone_label
from ehr_bridge.cli.support import (
    choose,
    find_referrals,
    known_connection,
    parse_day,
    short,
    shown,
    store_of,
)
from ehr_bridge.store import AUDIT_ACTIONS, AuditEventRow

app = typer.Typer(
    help="The audit log: operator actions and writes to the trust.", no_args_is_help=True
)


@app.command("list")
def audit_list(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option("--since", help="From YYYY-MM-DD (UTC).")] = None,
    referral: Annotated[
        str | None,
        typer.Option("--referral", "-r", help="Only this referral (our id, trust id, NHS number)."),
    ] = None,
    connection: Annotated[
        str | None, typer.Option("--connection", "-c", help="Only this connection.")
    ] = None,
    action: Annotated[
        str | None,
        typer.Option("--action", help="Only actions starting with this, e.g. reconcile."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Audit entries, oldest first (the newest --limit of them)."""
    start = parse_day(since, "--since")
    known_connection(ctx, connection)
    if action is not None and not any(a.startswith(action) for a in AUDIT_ACTIONS):
        choose(action, AUDIT_ACTIONS, "--action", "action")
    store = store_of(ctx)
    referral_ids: list[str | None] = [None]
    if referral is not None:
        rows = find_referrals(store, referral)
        if not rows:
            raise fail(f"no referral for {shown(referral)} (try `referrals list`)", EXIT_NOT_FOUND)
        referral_ids = [r.id for r in rows]
    events = [
        event
        for rid in referral_ids
        for event in store.audit_events(
            since=start, referral_id=rid, connection=connection, action=action, limit=limit
        )
    ]
    events.sort(key=lambda e: e.id or 0)
    data = [_entry(e) for e in events[-limit:]]
    if as_json:
        print_json(data)
        return
    console = obj(ctx).console
    rows_out = [
        [
            when(console, d["at"]),
            d["actor"],
            d["action"],
            d["outcome"],
            d["referral_id"],
            short(d["outbox_key"]),
            d["trust_id"],
            d["reason"],
        ]
        for d in data
    ]
    title = f"{len(data)} audit entries ({zone_label(console)})"
    print_table(console, title, AUDIT_COLUMNS, rows_out)


#: when, who, what and the outcome always; then why, and the records it names
AUDIT_COLUMNS: list[str | tables.Column] = [
    "when",
    "who",
    "action",
    "outcome",
    tables.optional("referral", 4),
    tables.optional("outbox key", 5),
    tables.optional("trust id", 3),
    tables.text("why", 2, drop=2, min_width=16),
]


def _entry(event: AuditEventRow) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at,
        "actor": event.actor,
        "action": event.action,
        "reason": event.reason,
        "connection": event.connection,
        "referral_id": event.referral_id,
        "outbox_key": event.outbox_key,
        "patient_id": event.patient_id,
        "outcome": event.outcome,
        "trust_id": event.trust_id,
        "detail": json.loads(event.detail),
    }
