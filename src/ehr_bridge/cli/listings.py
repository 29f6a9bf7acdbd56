"""Views and actions for support staff: status, referrals, outbox, quarantine, adapters.

Every listing prints a table for people and takes ``--json`` for scripts. Nothing here
prints patient data: records are named by our ids and the trust's record ids. Every
action (retry, cancel, dismiss) needs ``--reason`` and is recorded in the audit log with
the OS user and that reason. A filter value nobody knows (``--state deadd``) is exit 2.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated, Any

import typer
from rich.console import Console

from ehr_bridge.cli import tables
from ehr_bridge.cli.context import EXIT_NOT_FOUND, config_error, fail, obj, print_json, print_table
from ehr_bridge.cli.screen import when, zone_label, zone_of
from ehr_bridge.cli.support import ReasonOpt, choose, given_reason, known_connection, say, short
from ehr_bridge.cli.tables import print_fields
from ehr_bridge.cli.text import markup_safe
from ehr_bridge.errors import ConfigError
from ehr_bridge.store import (
    OUTBOX_STATES,
    OutboxRow,
    QuarantineRow,
    ReferralRow,
    RunRow,
    Store,
    operator,
    utcnow,
)
from ehr_bridge.store.held_scores import HOLD_OVERDUE_AFTER

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ConnectionOpt = Annotated[
    str | None, typer.Option("--connection", "-c", help="Only this connection.")
]

referrals_app = typer.Typer(
    help="Referrals pulled from the trust and their story.", no_args_is_help=True
)
outbox_app = typer.Typer(
    help="Write-backs to the trust: pending, done, dead.", no_args_is_help=True
)
quarantine_app = typer.Typer(
    help="Records set aside, with the field and reason.", no_args_is_help=True
)


def _store(ctx: typer.Context) -> Store:
    try:
        return obj(ctx).store()
    except ConfigError as exc:
        raise config_error(exc) from None


def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Per connection: cursor, counts by state, last run of each flow, last error."""
    cli = obj(ctx)
    try:
        names = [c.name for c in cli.config().connection]
    except ConfigError as exc:
        raise config_error(exc) from None
    store = _store(ctx)
    data = {name: _status_of(store, name) for name in names}
    if as_json:
        print_json(data)
        return
    for name, info in data.items():
        _print_status(cli.console, name, info)


def _print_status(console: Console, name: str, info: dict[str, Any]) -> None:
    """One connection's status as plain lines and one table (no Python reprs)."""
    line = partial(say, console)
    line(f"[bold]{markup_safe(name)}[/bold]  cursor {markup_safe(info['cursor'] or '(none yet)')}")
    line(
        f"  referrals pulled {info['referrals']['pulled']},"
        f" delivered {info['referrals']['delivered']};"
        f" quarantined (open) {info['quarantined']}"
    )
    outbox = ", ".join(f"{k} {v}" for k, v in sorted(info["outbox"].items())) or "empty"
    line(f"  outbox: {outbox}")
    if info["held_scores"]["count"]:
        line(f"  {markup_safe(_held_line(info['held_scores'], console))}")
    if info["risks"]["open"]:
        risks = info["risks"]
        line(
            f"  RISKS open {risks['open']} (not yet delivered {risks['undelivered']},"
            f" oldest {risks['oldest_minutes']:.0f} min): see `ehr-bridge risk list`"
        )
    rows = [
        [
            f,
            when(console, r["finished_at"]),
            "ok" if r["ok"] else "FAILED",
            counts_text(r["counts"]) if r["ok"] else "",
        ]
        for f, r in info["last_runs"].items()
    ]
    columns: list[str | tables.Column] = [
        "flow",
        tables.optional("finished", 1),
        "result",
        tables.text("counts", 3),
    ]
    print_table(console, f"  last runs ({zone_label(console)})", columns, rows, indent=2)
    failure = info["last_failure"]
    if failure:
        tables.print_wrapped(console, failure_line(console, failure), indent=2, hang=4)


def counts_text(counts: dict[str, Any]) -> str:
    """A run's counts as ``seen 4, stored 2``: zeros left out, "nothing to do" if all are."""
    shown = [f"{k.replace('_', ' ')} {v}" for k, v in sorted(counts.items()) if v]
    return ", ".join(shown) or "nothing to do"


def failure_line(console: Console, failure: dict[str, Any]) -> str:
    """The last error, saying whether it is still the flow's latest run or an old one."""
    at = when(console, failure["at"])
    if failure["current"]:
        state = f"{failure['flow']} at {at}, its latest run"
        label = "last error"
    else:
        since = when(console, failure["succeeded_since"])
        state = f"{failure['flow']} at {at}; {failure['flow']} has run fine since, last at {since}"
        label = "last error (old)"
    code = f" [{failure['code']}]" if failure.get("code") else ""
    return f"{label}: {state}{code}: {failure['error']}"


def _status_of(store: Store, name: str) -> dict[str, Any]:
    runs = store.last_runs(name)
    last_error = store.last_error(name)
    return {
        "cursor": store.get_cursor(name),
        "referrals": store.referral_counts(name),
        "outbox": store.outbox_counts(name),
        "quarantined": store.quarantine_count(name),
        "held_scores": _held_of(store, name),
        "risks": _risks_of(store, name),
        "last_runs": {
            flow: {
                "finished_at": r.finished_at.isoformat(timespec="seconds"),
                "ok": r.ok,
                "counts": json.loads(r.counts),
            }
            for flow, r in runs.items()
        },
        "last_error": (
            f"{last_error.flow} at {last_error.finished_at.isoformat(timespec='seconds')}:"
            f" {last_error.error}"
            if last_error
            else None
        ),
        "last_failure": _failure(last_error, runs),
    }


def _failure(last_error: RunRow | None, runs: dict[str, RunRow]) -> dict[str, Any] | None:
    """The latest failed run, and whether its flow has succeeded since (then it is old)."""
    if last_error is None:
        return None
    latest = runs.get(last_error.flow)
    later = latest if latest is not None and latest.ok and latest.id != last_error.id else None
    return {
        "flow": last_error.flow,
        "at": last_error.finished_at.isoformat(timespec="seconds"),
        "code": last_error.error_code,
        "error": last_error.error,
        "current": later is None,
        "succeeded_since": later.finished_at.isoformat(timespec="seconds") if later else None,
    }


def _risks_of(store: Store, name: str) -> dict[str, Any]:
    """Open risks (not acknowledged at the trust, not resolved by an operator)."""
    views = store.risks(name, open_only=True)
    now = utcnow()
    return {
        "open": len(views),
        "undelivered": sum(1 for v in views if v.outbox_state != "done"),
        "oldest_minutes": max(
            ((now - v.created_at).total_seconds() / 60 for v in views), default=0
        ),
    }


def _held_of(store: Store, name: str) -> dict[str, Any]:
    """Scores stored but not written back: their item answers are not collected yet."""
    summary = store.held_summary(name)
    return {
        "count": summary.count,
        "oldest": summary.oldest.isoformat(timespec="seconds") if summary.oldest else None,
        "overdue_after_days": HOLD_OVERDUE_AFTER.days,
        "overdue": [
            {
                "observation": h.observation_id,
                "response": h.response_id,
                "referral": h.referral_id,
                "held_at": h.held_at.isoformat(timespec="seconds") if h.held_at else None,
            }
            for h in summary.overdue
        ],
    }


def _held_line(held: dict[str, Any], console: Console | None = None) -> str:
    oldest = when(console, held["oldest"])
    line = f"scores awaiting items {held['count']} (oldest held {oldest})"
    if held["overdue"]:
        days = held["overdue_after_days"]
        line += f"; {len(held['overdue'])} held over {days} days:"
        line += " " + ", ".join(
            f"{h['observation']} (referral {h['referral']})" for h in held["overdue"]
        )
    return line


@referrals_app.command("list")
def referrals_list(
    ctx: typer.Context, connection: ConnectionOpt = None, as_json: JsonOpt = False
) -> None:
    """Every referral pulled, with delivery state and write-back counts."""
    connection = known_connection(ctx, connection)
    store = _store(ctx)
    rows = store.list_referrals(connection)
    data = [_referral_summary(store, r) for r in rows]
    if as_json:
        print_json(data)
        return
    console = obj(ctx).console
    print_table(console, f"{len(data)} referrals ({zone_label(console)})", REFERRAL_COLUMNS, [
        [
            d["id"],
            d["connection"],
            d["trust_referral_id"],
            d["status"],
            when(console, d["delivered_at"]) or "no",
            d["outbox"].get("done", 0),
            d["outbox"].get("pending", 0) + d["outbox"].get("in_flight", 0),
            d["outbox"].get("dead", 0),
        ]
        for d in data
    ])  # fmt: skip


#: ids and the status always; at 80 columns the connection goes first, then the time
REFERRAL_COLUMNS: list[str | tables.Column] = [
    "id",
    tables.optional("connection", 5),
    "trust id",
    "status",
    tables.optional("delivered", 4),
    tables.Column("written", drop=3, justify="right"),
    tables.Column("pending", drop=2, justify="right"),
    tables.Column("dead", drop=1, justify="right"),
]


def _referral_summary(store: Store, row: ReferralRow) -> dict[str, Any]:
    states: dict[str, int] = {}
    for item in store.outbox_rows(referral_id=row.id):
        states[item.state] = states.get(item.state, 0) + 1
    return {
        "id": row.id,
        "connection": row.connection,
        "trust_referral_id": row.trust_referral_id,
        "status": row.status,
        "patient_id": row.patient_id,
        "source_version": row.source_version,
        "first_pulled_at": row.first_pulled_at,
        "last_pulled_at": row.last_pulled_at,
        "delivered_at": row.delivered_at,
        "outbox": states,
    }


@referrals_app.command("show")
def referrals_show(
    ctx: typer.Context,
    ref: Annotated[
        str, typer.Argument(help="Our referral id, the trust's referral id, or an NHS number.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """One referral's whole story: versions pulled, FHIR, deliveries, write-backs, actions."""
    from ehr_bridge.cli.lineage import lineage, print_lineage  # imported when run (fast start)
    from ehr_bridge.cli.support import one_referral

    store = _store(ctx)
    data = lineage(store, one_referral(store, ref))
    if as_json:
        print_json(data)
        return
    print_lineage(obj(ctx).console, data)


def _outbox_dict(row: OutboxRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "resource": f"{row.resource_type}/{row.resource_id}",
        "state": row.state,
        "attempts": row.attempts,
        "trust_id": row.trust_id,
        "next_attempt_at": row.next_attempt_at,
        "last_error": row.last_error,
        "referral_id": row.referral_id,
        "connection": row.connection,
        "done_at": row.done_at,
    }


#: key, kind, state and the trust's id always; the error wraps; attempts go first
OUTBOX_COLUMNS: list[str | tables.Column] = [
    "key",
    "kind",
    "state",
    tables.Column("attempts", drop=1, justify="right"),
    "trust id",
    tables.text("last error", 3, min_width=24),
]


def _print_outbox(console: Console, title: str, rows: list[OutboxRow]) -> None:
    print_table(
        console,
        title,
        OUTBOX_COLUMNS,
        [[short(r.id), r.kind, r.state, r.attempts, r.trust_id, r.last_error] for r in rows],
    )


@outbox_app.command("list")
def outbox_list(
    ctx: typer.Context,
    state: Annotated[
        str | None, typer.Option(help="pending, in_flight, done, dead or cancelled.")
    ] = None,
    connection: ConnectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write-backs to the trust, oldest first."""
    state = choose(state, OUTBOX_STATES, "--state", "state")
    connection = known_connection(ctx, connection)
    rows = _store(ctx).outbox_rows(connection=connection, state=state)
    if as_json:
        print_json([_outbox_dict(r) for r in rows])
        return
    _print_outbox(obj(ctx).console, f"{len(rows)} outbox rows", rows)


@quarantine_app.command("list")
def quarantine_list(
    ctx: typer.Context,
    connection: ConnectionOpt = None,
    all_states: Annotated[
        bool, typer.Option("--all", help="Include resolved and dismissed.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Records set aside, with the field and reason that stopped each."""
    connection = known_connection(ctx, connection)
    rows = _store(ctx).quarantine_rows(connection=connection, state=None if all_states else "open")
    if as_json:
        print_json([_quarantine_dict(r) for r in rows])
        return
    print_table(
        obj(ctx).console,
        f"{len(rows)} quarantined",
        QUARANTINE_COLUMNS,
        [[r.id, r.connection, r.source, r.record_ref, r.field, own_reason(r)] for r in rows],
    )


#: the entry, what was set aside and the field always; the reason wraps to three lines
QUARANTINE_COLUMNS: list[str | tables.Column] = [
    tables.Column("id", justify="right"),
    tables.optional("connection", 1),
    "source",
    "record",
    "field",
    tables.text("reason", 3, min_width=24),
]


def own_reason(row: QuarantineRow) -> str:
    """The reason without the ``record X, field Y:`` its own columns already show."""
    reason = row.reason or ""
    for prefix in (
        f"record {row.record_ref}, field {row.field}: ",
        f"record {row.record_ref}: ",
        f"field {row.field}: ",
    ):
        if reason.startswith(prefix):
            return reason[len(prefix) :]
    return reason


def _quarantine_dict(row: QuarantineRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "connection": row.connection,
        "source": row.source,
        "record": row.record_ref,
        "field": row.field,
        "code": row.code,
        "reason": row.reason,
        "state": row.state,
        "created_at": row.created_at,
        "closed_at": row.closed_at,
        "payload_sha256": row.payload_hash,
    }


@quarantine_app.command("retry")
def quarantine_retry(
    ctx: typer.Context,
    entry_id: Annotated[int, typer.Argument(help="The quarantine entry id.")],
    reason: ReasonOpt,
    as_json: JsonOpt = False,
) -> None:
    """After the record is fixed at the trust: pull that one record again now."""
    from ehr_bridge.cli.quarantine import retry_entry  # imported when run (fast start)

    retry_entry(ctx, entry_id, given_reason(reason), as_json)


@quarantine_app.command("dismiss")
def quarantine_dismiss(
    ctx: typer.Context,
    entry_id: Annotated[int, typer.Argument(help="The quarantine entry id.")],
    reason: ReasonOpt,
) -> None:
    """Close an entry that needs no fix (e.g. a test record), with the reason."""
    from ehr_bridge.cli.quarantine import dismiss_entry  # imported when run (fast start)

    dismiss_entry(ctx, entry_id, reason)


@quarantine_app.command("show")
def quarantine_show(
    ctx: typer.Context,
    entry_id: Annotated[
        int, typer.Argument(help="The quarantine entry id from `quarantine list`.")
    ],
    payload: Annotated[
        bool, typer.Option("--payload", help="Also print the raw record (contains patient data).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """One quarantine entry: record, field, reason; the raw record only with --payload."""
    row = _store(ctx).quarantine_entry(entry_id)
    if row is None:
        raise fail(f"no quarantine entry {entry_id} (try `quarantine list`)", EXIT_NOT_FOUND)
    data = _quarantine_dict(row)
    if payload:
        data["payload"] = _store(ctx).quarantine_payload(entry_id)  # None once purged
    if as_json:
        print_json(data)
        return
    console = obj(ctx).console
    shown = {k: when(console, v) if k.endswith("_at") else v for k, v in data.items()}
    shown["created_at"] = f"{shown['created_at']} ({zone_of(console)})"
    print_fields(console, {k: v for k, v in shown.items() if k != "payload"})
    if payload:
        console.print_json(json.dumps(data["payload"]))


@outbox_app.command("retry")
def outbox_retry(
    ctx: typer.Context,
    reason: ReasonOpt,
    keys: Annotated[list[str] | None, typer.Argument(help="Outbox keys of dead rows.")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every dead row.")] = False,
    connection: ConnectionOpt = None,
) -> None:
    """Put dead-lettered write-backs back in the queue, with fresh attempts."""
    if bool(keys) == all_dead:
        raise typer.BadParameter("give outbox keys or --all-dead (not both)")
    reason = given_reason(reason)
    connection = known_connection(ctx, connection)
    store = _store(ctx)
    chosen = None if all_dead else _full_keys(store, keys or [])
    retried = store.retry_dead(chosen, connection, actor=operator(), reason=reason)
    if not retried:
        raise fail("no dead rows matched (see `outbox list --state dead`)", EXIT_NOT_FOUND)
    typer.echo(f"re-queued {len(retried)} write-back(s); the next push writes them")


@outbox_app.command("cancel")
def outbox_cancel(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The outbox key (or its first characters).")],
    reason: ReasonOpt,
) -> None:
    """Cancel a write-back that is not written yet, e.g. one the trust must not receive."""
    reason = given_reason(reason)
    store = _store(ctx)
    (full,) = _full_keys(store, [key])
    row = store.cancel(full, reason, actor=operator())
    if row is None:
        raise fail(f"no outbox row {key!r}", EXIT_NOT_FOUND)
    if row.state == "done":
        raise fail(f"outbox row {key!r} is already written to the trust (trust id {row.trust_id})")
    typer.echo(f"cancelled {row.id} ({row.kind})")


def _full_keys(store: Store, keys: list[str]) -> list[str]:
    """Accept the shortened keys the tables print, when they are unambiguous."""
    known = [r.id for r in store.outbox_rows()]
    result = []
    for key in keys:
        matches = [k for k in known if k.startswith(key)]
        if len(matches) > 1:
            raise fail(f"outbox key {key!r} is ambiguous; give more characters")
        result.append(matches[0] if matches else key)
    return result
