"""`risk list` and `risk resolve`: the risks the trust's duty team must see, for support staff.

A risk stays open until the trust acknowledges its item (read back where the trust can
tell us) or an operator resolves it with a reason, after confirming with the duty team
that someone has seen it. Listings show ids, levels, states and times; never patient data
or the provider's text. Resolving is audited with the OS user and the reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from ehr_bridge.cli import tables
from ehr_bridge.cli.context import EXIT_NOT_FOUND, fail, obj, print_json, print_table
from ehr_bridge.cli.support import choose, given_reason, known_connection, short, store_of
from ehr_bridge.errors import TerminalError
from ehr_bridge.observability.alerts import RiskPolicy, overdue_reason
from ehr_bridge.store import RiskView, operator, utcnow

app = typer.Typer(
    help="Risks for the trust's duty team: open, unacknowledged, overdue.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
STATES = ("open", "overdue", "all")


@app.command("list")
def risk_list(
    ctx: typer.Context,
    connection: Annotated[
        str | None, typer.Option("--connection", "-c", help="Only this connection.")
    ] = None,
    state: Annotated[
        str, typer.Option("--state", help="open (default), overdue, or all.")
    ] = "open",
    as_json: JsonOpt = False,
) -> None:
    """Risk events: where each stands at the trust, oldest first."""
    choose(state, STATES, "--state", "state")
    known_connection(ctx, connection)
    cli = obj(ctx)
    names = {c.name: c for c in cli.config().connection}
    store = store_of(ctx)
    now = utcnow()
    views = store.risks(connection, open_only=state != "all")
    data = []
    for view in views:
        config = names.get(view.connection)
        policy = RiskPolicy(
            config.risk.acknowledge_within_minutes if config else 60,
            config.risk.repeat_alert_minutes if config else 30,
        )
        why = overdue_reason(view, now, policy) if view.open else None
        if state == "overdue" and why is None:
            continue
        data.append(risk_dict(view, now, why))
    if as_json:
        print_json(data)
        return
    print_table(
        cli.console,
        f"{len(data)} risks ({state})",
        RISK_COLUMNS,
        [
            [
                short(d["id"]),
                d["connection"],
                d["trust_referral_id"] or "-",
                d["level"],
                d["state"] + (f" ({d['overdue']})" if d["overdue"] else ""),
                _age(d["age_minutes"]),
                d["alerts_sent"],
            ]
            for d in data
        ],
    )


#: the risk, its referral, level and state always; then the age, alerts, connection
RISK_COLUMNS: list[str | tables.Column] = [
    "risk",
    tables.optional("connection", 3),
    "trust ref",
    "level",
    "state",
    tables.Column("age", drop=2, justify="right"),
    tables.Column("alerts", drop=1, justify="right"),
]


@app.command("resolve")
def risk_resolve(
    ctx: typer.Context,
    risk_id: Annotated[str, typer.Argument(help="The risk's id (or an unambiguous prefix).")],
    reason: Annotated[
        str, typer.Option("--reason", help="How you know the duty team has it (audited).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Close a risk by hand, once the trust's duty team has confirmed they have it."""
    reason = given_reason(reason)
    store = store_of(ctx)
    matches = [v for v in store.risks() if v.id.startswith(risk_id)]
    if len(matches) != 1:
        found = "no risk" if not matches else f"{len(matches)} risks"
        raise fail(f"{found} with id {risk_id!r} (try `risk list --state all`)", EXIT_NOT_FOUND)
    try:
        view = store.resolve_risk(matches[0].id, actor=operator(), reason=reason)
    except TerminalError as exc:
        raise fail(exc.safe_message) from None
    data = risk_dict(view, utcnow(), None)
    if as_json:
        print_json(data)
        return
    obj(ctx).console.print(f"risk {view.id} resolved", highlight=False)


def risk_state(view: RiskView) -> str:
    """One word for where a risk stands."""
    if view.resolved_at is not None:
        return "resolved"
    if view.acknowledged_at is not None:
        return "acknowledged"
    if view.origin == "quarantine":
        return "quarantined"
    if view.outbox_key is None:
        return "not_writable"
    if view.outbox_state == "done":
        return "delivered"
    return view.outbox_state or "queued"


def risk_dict(view: RiskView, now: datetime, overdue: str | None) -> dict[str, Any]:
    """A risk for ``--json`` and the tables: ids, codes and times only."""
    return {
        "id": view.id,
        "connection": view.connection,
        "referral_id": view.referral_id,
        "trust_referral_id": view.trust_referral_id,
        "level": view.level,
        "reason": view.reason,
        "origin": view.origin,
        "state": risk_state(view),
        "overdue": overdue,
        "raised_at": view.raised_at,
        "created_at": view.created_at,
        "age_minutes": round((now - view.created_at).total_seconds() / 60, 1),
        "outbox_key": view.outbox_key,
        "trust_id": view.trust_id,
        "delivered_at": view.delivered_at,
        "acknowledged_at": view.acknowledged_at,
        "acknowledged_by": view.acknowledged_by,
        "resolved_at": view.resolved_at,
        "resolved_by": view.resolved_by,
        "alerts_sent": view.alerts_sent,
        "last_alert_at": view.last_alert_at,
    }


def _age(minutes: float) -> str:
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"
