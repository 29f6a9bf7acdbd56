"""`ehr-bridge patients`: one patient's identity story, and operator links between two.

`show` names a patient by our id (or an unambiguous prefix), an NHS number, or one of
their referrals, and prints the NHS number masked (``999 *** **34``). `link KEEP OTHER`
says two patient records are one person: OTHER's referrals move to KEEP and are
delivered again with the right patient; `unlink OTHER` undoes it. Both need a reason and
go into the audit log; the history is never deleted.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from ehr_bridge.cli import tables
from ehr_bridge.cli.context import EXIT_FAILED, EXIT_NOT_FOUND, fail, obj, print_json, print_table
from ehr_bridge.cli.screen import day, when, zone_label
from ehr_bridge.cli.support import (
    find_referrals,
    given_reason,
    is_nhs_number,
    mask_nhs_number,
    say,
    short,
    shown,
    store_of,
)
from ehr_bridge.errors import ConflictError, TerminalError
from ehr_bridge.store import PatientRow, Store, operator

app = typer.Typer(help="Patients: identity history, merges and links.", no_args_is_help=True)
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept in the history and audit).")]


def _patients(store: Store, ref: str) -> list[PatientRow]:
    """Patients by id or id prefix, NHS number, or a referral of theirs."""
    if is_nhs_number(ref):
        return store.patients_by_nhs_number("".join(c for c in ref if c.isdigit()))
    exact = store.patient(ref)
    if exact is not None:
        return [exact]
    by_referral = {r.patient_id for r in find_referrals(store, ref)}
    found = [store.patient(pid) for pid in sorted(by_referral)]
    if len(ref) >= 8:
        found += store.patients_with_prefix(ref)
    return list({p.id: p for p in found if p is not None}.values())


def _one(store: Store, ref: str) -> PatientRow:
    found = _patients(store, ref)
    if not found:
        raise fail(f"no patient for {shown(ref)} (try `referrals show`)", EXIT_NOT_FOUND)
    if len(found) > 1:
        ids = ", ".join(p.id for p in found)
        raise typer.BadParameter(f"{len(found)} patients match {shown(ref)}: give one of {ids}")
    return found[0]


def _describe(store: Store, row: PatientRow) -> dict[str, Any]:
    history = store.patient_history(row.id)
    return {
        "id": row.id,
        "connection": row.connection,
        "nhs_number": mask_nhs_number(row.nhs_number),
        "active": row.active,
        "linked_to": row.merged_into,
        "referrals": [
            {
                "id": r.id,
                "trust_referral_id": r.trust_referral_id,
                "status": r.status,
                "belongs_here": r.patient_id == row.id,
            }
            for r in store.referrals_of_patient(row.id)
        ],
        "history": [
            {
                "at": e.created_at,
                "kind": e.kind,
                "patient_id": e.patient_id,
                "other_patient_id": e.other_patient_id,
                "reason": e.reason,
                "actor": e.actor,
                "referral_id": e.referral_id,
                "ended_at": e.ended_at,
            }
            for e in history
        ],
    }


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Patient id (or prefix), NHS number or referral.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """One patient: masked NHS number, referrals, and every merge, link and number change."""
    store = store_of(ctx)
    data = _describe(store, _one(store, ref))
    if as_json:
        print_json(data)
        return
    _print(obj(ctx).console, data)


#: when and what always; the other patient by the prefix `patients show` takes back
HISTORY_COLUMNS: list[str | tables.Column] = [
    "when",
    "event",
    "other patient",
    tables.optional("by", 2),
    tables.text("reason", 2, drop=1, min_width=16),
    tables.optional("ended", 3),
]
REFERRAL_COLUMNS: list[str | tables.Column] = ["id", "trust id", "status", "belongs here"]


def _print(console: Console, data: dict[str, Any]) -> None:
    state = "active" if data["active"] else "inactive (merged into another record)"
    say(console, f"[bold]patient {data['id']}[/bold] ({data['connection']}), {state}")
    say(console, f"  NHS number {data['nhs_number'] or 'not held'}")
    if data["linked_to"]:
        say(console, f"  linked by an operator to {data['linked_to']}")
    referrals = [
        [r["id"], r["trust_referral_id"], r["status"], "yes" if r["belongs_here"] else "linked"]
        for r in data["referrals"]
    ]
    print_table(console, "  referrals", REFERRAL_COLUMNS, referrals, indent=2)
    events = [_event_row(console, e) for e in data["history"]]
    title = f"  identity history ({zone_label(console)})"
    print_table(console, title, HISTORY_COLUMNS, events, indent=2)


def _event_row(console: Console, e: dict[str, Any]) -> list[Any]:
    other = short(e["other_patient_id"]) if e["other_patient_id"] else ""
    at = when(console, e["at"])
    return [at, e["kind"], other, e["actor"], e["reason"], day(console, e["ended_at"])]


@app.command("link")
def link(
    ctx: typer.Context,
    keep: Annotated[str, typer.Argument(help="The patient to keep (id or prefix).")],
    other: Annotated[str, typer.Argument(help="The patient that is the same person.")],
    reason: ReasonOpt,
) -> None:
    """Say two patient records are one person: OTHER's referrals move to KEEP."""
    reason = given_reason(reason)
    store = store_of(ctx)
    kept, gone = _one(store, keep), _one(store, other)
    if kept.id == gone.id:
        raise typer.BadParameter("give two different patients")
    moved = _change(lambda: store.link_patients(kept.id, gone.id, actor=operator(), reason=reason))
    typer.echo(
        f"linked {gone.id} to {kept.id}; {len(moved)} referral(s) moved, delivered again next"
    )


@app.command("unlink")
def unlink(
    ctx: typer.Context,
    other: Annotated[str, typer.Argument(help="The patient linked away earlier.")],
    reason: ReasonOpt,
) -> None:
    """Undo `patients link`: the patient's own referrals come back to it."""
    reason = given_reason(reason)
    store = store_of(ctx)
    gone = _one(store, other)
    moved = _change(lambda: store.unlink_patient(gone.id, actor=operator(), reason=reason))
    typer.echo(f"unlinked {gone.id}; {len(moved)} referral(s) moved back, delivered again next")


def _change(action: Any) -> list[str]:
    try:
        moved: list[str] = action()
    except ConflictError as exc:
        raise fail(exc.safe_message, EXIT_FAILED) from None
    except TerminalError as exc:
        raise fail(exc.safe_message, EXIT_NOT_FOUND) from None
    return moved
