"""What the support commands share: finding records, dates, masking, filters, reasons.

A support user may name a referral by our id, the trust's referral id or the patient's
NHS number. An NHS number is matched inside the store and never echoed back: messages
say "that NHS number", and `patients show` prints it masked (``999 *** **34``).

Every filter value (a state, a connection, a flow, an action) is checked with ``choose``
before anything is read: a typo ends the command with exit 2 naming the option, a close
match and the known values, rather than reading as "0 rows". Every command that changes
something takes ``--reason`` (``ReasonOpt``), which goes into the audit entry.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from ehr_bridge.cli.context import EXIT_CONFIG, EXIT_NOT_FOUND, config_error, fail, obj
from ehr_bridge.errors import ConfigError
from ehr_bridge.store import ReferralRow, Store

if TYPE_CHECKING:  # the engine is imported only by the commands that build connections
    from ehr_bridge.sync.connection import Connection

_NHS_NUMBER = re.compile(r"\d{3} ?\d{3} ?\d{4}")


def store_of(ctx: typer.Context) -> Store:
    """The state store, or exit 2 naming the config problem."""
    try:
        return obj(ctx).store()
    except ConfigError as exc:
        raise config_error(exc) from None


def connections_of(ctx: typer.Context, name: str | None) -> list[Connection]:
    """The enabled connections (or the one named), built as a sync would; exit 2 if none."""
    return _built(ctx, known_connection(ctx, name))


def connection_named(ctx: typer.Context, name: str) -> Connection:
    """One connection by name (a quarantine entry's, say); exit 2 if it is not configured."""
    return _built(ctx, name)[0]


def _built(ctx: typer.Context, name: str | None) -> list[Connection]:
    from ehr_bridge.sync.connection import build_connections  # imported when run (fast start)

    try:
        found = build_connections(obj(ctx).config(), name)
    except ConfigError as exc:
        raise config_error(exc) from None
    if not found:
        raise fail("no enabled connection in the config ([[connection]])", EXIT_CONFIG)
    return found


ReasonOpt = Annotated[
    str,
    typer.Option(
        "--reason", help="Why, e.g. a ticket number (kept in the audit log; no patient data)."
    ),
]


def choose(value: str | None, known: Iterable[str], option: str, what: str) -> str | None:
    """``value`` if it is one of ``known`` (None stays None); else exit 2 with the choices.

    The message names the option, the closest known value (difflib) when one is close,
    and every known value: ``--state: unknown state 'deadd'; did you mean 'dead'? (known:
    pending, in_flight, done, dead, cancelled)``.
    """
    names = list(known)
    if value is None or value in names:
        return value
    close = difflib.get_close_matches(value, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(names) if names else "none configured"
    message = f"{option}: unknown {what} {shown(value)}{hint} (known: {listed})"
    raise fail(message, EXIT_CONFIG)


def connection_names(ctx: typer.Context) -> list[str]:
    """The names of the connections in the config (enabled or not); exit 2 on a config error."""
    return [c.name for c in obj(ctx).config().connection]


def known_connection(ctx: typer.Context, name: str | None) -> str | None:
    """``--connection`` checked against the config: exit 2 with the configured names."""
    return choose(name, connection_names(ctx), "--connection", "connection")


def given_reason(reason: str) -> str:
    """A ``--reason`` with something in it; a blank one is a usage error (exit 2)."""
    if not reason.strip():
        raise fail(
            "--reason: say why (a ticket number, say); it goes in the audit log", EXIT_CONFIG
        )
    return reason.strip()


def parse_day(text: str | None, option: str) -> datetime | None:
    """``YYYY-MM-DD`` as the start of that day (UTC); a bad date is a usage error (exit 2)."""
    if text is None:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date YYYY-MM-DD", param_hint=option) from None
    return day.replace(tzinfo=UTC)


def is_nhs_number(text: str) -> bool:
    """True when the text looks like an NHS number (10 digits, maybe grouped 3-3-4)."""
    return bool(_NHS_NUMBER.fullmatch(text.strip()))


def mask_nhs_number(number: str | None) -> str | None:
    """``999 *** **34``: enough to tell two patients apart on a call, not to identify one."""
    if not number:
        return None
    digits = re.sub(r"\D", "", number)
    return f"{digits[:3]} *** **{digits[-2:]}" if len(digits) == 10 else "***"


def shown(ref: str) -> str:
    """How to repeat a user's reference in a message: NHS numbers are never echoed."""
    return "that NHS number" if is_nhs_number(ref) else repr(ref)


def find_referrals(store: Store, ref: str) -> list[ReferralRow]:
    """Referrals by our id, the trust's referral id, or the patient's NHS number."""
    row = store.find_referral(ref)
    if row is not None:
        return [row]
    if not is_nhs_number(ref):
        return []
    digits = re.sub(r"\D", "", ref)
    found: dict[str, ReferralRow] = {}
    for patient in store.patients_by_nhs_number(digits):
        for referral in store.referrals_of_patient(patient.id):
            found[referral.id] = referral
    return sorted(found.values(), key=lambda r: r.first_pulled_at)


def one_referral(store: Store, ref: str) -> ReferralRow:
    """Exactly one referral for ``ref``: exit 3 if none, exit 2 listing them if several."""
    rows = find_referrals(store, ref)
    if not rows:
        raise fail(f"no referral for {shown(ref)} (try `referrals list`)", EXIT_NOT_FOUND)
    if len(rows) > 1:
        ids = ", ".join(f"{r.id} (trust {r.trust_referral_id})" for r in rows)
        raise fail(f"{len(rows)} referrals match {shown(ref)}: give one of {ids}", EXIT_CONFIG)
    return rows[0]


def warn(message: str) -> None:
    """A warning on standard error (results stay alone on standard output)."""
    Console(stderr=True, soft_wrap=True).print(
        f"[yellow]warning:[/yellow] {message}", highlight=False
    )


def say(console: Console, text: str) -> None:
    """Print a line for people, without rich guessing at highlighting ids and numbers."""
    console.print(text, highlight=False)


def short(value: str | None, length: int = 12) -> str:
    """A long id cut for a table column; commands accept such unambiguous prefixes back."""
    return (value or "")[:length]
