"""`ehr-bridge reconcile`: compare the trust's record with what we wrote, and repair.

A dry run by default: it reads the trust and reports, per referral, in sync / missing /
changed / unexpected, and changes nothing. ``--repair`` (which needs ``--reason``)
re-queues what is missing and adopts dead letters that landed after all; ``--force``
(with ``--repair``) also puts our values back over edits made at the trust. Every run and
every repair is audited with the reason. What was re-queued is counted "queued for
repair", not "in sync": it is not at the trust until the next push writes it.
Exit 0 when everything checked is in sync (or was put right or queued), 1 when drift is
left or the trust could not be read, 2 for usage or configuration, 3 for an unknown
referral.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ehr_bridge.cli import tables
from ehr_bridge.cli.context import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    config_error,
    fail,
    obj,
    print_json,
    print_table,
)
from ehr_bridge.cli.support import (
    connections_of,
    find_referrals,
    given_reason,
    parse_day,
    say,
    short,
    shown,
    store_of,
    warn,
)
from ehr_bridge.errors import ConfigError
from ehr_bridge.store import AuditEntry, ReferralRow, Store, operator
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.reconcile import (
    Finding,
    ReferralReport,
    RepairOptions,
    reconcile,
    referrals_to_check,
    require_reader,
)


def reconcile_command(
    ctx: typer.Context,
    connection: Annotated[
        str | None, typer.Option("--connection", "-c", help="Only this connection.")
    ] = None,
    referral: Annotated[
        str | None,
        typer.Option("--referral", "-r", help="Only this referral (our id, trust id, NHS number)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only write-backs changed since YYYY-MM-DD.")
    ] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Re-queue what is missing (default: dry run).")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="With --repair: overwrite edits made at the trust.")
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why (needed with --repair; kept in the audit log)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Read back what the trust holds for what we wrote; report drift per referral."""
    if force and not repair:
        raise typer.BadParameter("--force only makes sense with --repair", param_hint="--force")
    if repair and reason is None:
        raise fail("--repair needs --reason (a ticket number, say): it is audited", EXIT_CONFIG)
    why = given_reason(reason) if reason is not None else ""
    start = parse_day(since, "--since")
    connections = connections_of(ctx, connection)
    store = store_of(ctx)
    wanted = _wanted(store, referral)
    options = RepairOptions(repair=repair, force=force, actor=operator(), reason=why)
    reports: list[ReferralReport] = []
    skipped = 0
    for conn in _readable(connections, named=connection is not None):
        rows = referrals_to_check(store, conn.name, since=start)
        if wanted is not None:
            rows = [r for r in rows if r.id in wanted]
        done = _run(conn, store, rows, options, quiet=as_json)
        skipped += len(rows) - len(done)
        reports += done
    if skipped:
        warn(f"the trust did not answer; {skipped} referral(s) were not checked")
    _audit(store, connection, options, reports)
    _print(ctx, reports, options, as_json)
    if any(r.verdict not in ("in sync", "queued") for r in reports):
        raise typer.Exit(EXIT_FAILED)


def _wanted(store: Store, ref: str | None) -> set[str] | None:
    if ref is None:
        return None
    rows = find_referrals(store, ref)
    if not rows:
        raise fail(f"no referral for {shown(ref)} (try `referrals list`)", EXIT_NOT_FOUND)
    return {r.id for r in rows}


def _readable(connections: list[Connection], *, named: bool) -> list[Connection]:
    """The connections whose trust adapter can read back; exit 2 if none (or the named) can't."""
    readable = []
    for conn in connections:
        try:
            require_reader(conn)
        except ConfigError as exc:
            if named or len(connections) == 1:
                raise config_error(exc) from None
            warn(f"{conn.name} skipped: {exc.safe_message}")
            continue
        readable.append(conn)
    if not readable:
        raise fail("no connection's trust adapter can read items back (read_items)", EXIT_CONFIG)
    return readable


def _run(
    conn: Connection, store: Store, rows: list[ReferralRow], options: RepairOptions, quiet: bool
) -> list[ReferralReport]:
    progress = Progress(
        TextColumn(f"reconciling {conn.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=quiet or len(rows) < 2,
    )
    with progress:
        task = progress.add_task("reconcile", total=len(rows))
        return reconcile(conn, store, rows, options, lambda _r: progress.advance(task))


def _audit(
    store: Store, connection: str | None, options: RepairOptions, reports: list[ReferralReport]
) -> None:
    verdicts = [r.verdict for r in reports]
    detail = {
        "checked": len(reports),
        "drift": verdicts.count("drift"),
        "errors": verdicts.count("error"),
        "queued": verdicts.count("queued"),
        "repair": options.repair,
        "force": options.force,
    }
    reason = options.reason or None  # a dry run may have none
    entry = AuditEntry("reconcile.run", options.actor, reason, connection=connection, detail=detail)
    store.record_audit(entry)


def _print(
    ctx: typer.Context, reports: list[ReferralReport], options: RepairOptions, as_json: bool
) -> None:
    if as_json:
        print_json([r.as_dict() for r in reports])
        return
    console = obj(ctx).console
    rows = [_row(r, f) for r in reports for f in r.findings if f.state != "in_sync"]
    if rows:
        print_table(console, "findings", COLUMNS, rows)
    for report in reports:
        if report.error:
            tables.print_wrapped(console, f"{report.trust_referral_id}: not read: {report.error}")
    verdicts = [r.verdict for r in reports]
    queued = f" {verdicts.count('queued')} queued for repair," if options.repair else ""
    say(
        console,
        f"{len(reports)} referral(s) checked: {verdicts.count('in sync')} in sync,{queued}"
        f" {verdicts.count('drift')} with drift, {verdicts.count('error')} not readable",
    )
    if not options.repair and verdicts.count("drift"):
        say(console, "dry run: nothing changed; --repair re-queues what is missing")
    elif verdicts.count("queued"):
        say(
            console,
            "queued, not yet at the trust: `ehr-bridge sync --once --flow push` writes them"
            " now, then `ehr-bridge reconcile` says in sync",
        )


#: what drifted, by referral, kind, state and ids; then the fields and the repair, wrapped
COLUMNS: list[str | tables.Column] = [
    "trust ref",
    "kind",
    "state",
    "key",
    "trust id",
    tables.text("fields", 3, drop=2, min_width=12),
    tables.text("repair / note", 3, drop=1, min_width=15),
]


def _row(report: ReferralReport, f: Finding) -> list[Any]:
    fields = ", ".join(f.fields)
    note = f.repair or f.note
    return [
        report.trust_referral_id,
        f.kind,
        f.state,
        short(f.outbox_key),
        f.trust_id,
        fields,
        note,
    ]
