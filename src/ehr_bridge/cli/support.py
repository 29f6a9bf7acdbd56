"""What the support commands share: finding records, dates, masking, building connections.

A support user may name a referral by our id, the trust's referral id or the patient's
NHS number. An NHS number is matched inside the store and never echoed back: messages
say "that NHS number", and `patients show` prints it masked (``999 *** **34``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import typer
from rich.console import Console

from ehr_bridge.cli.context import EXIT_CONFIG, EXIT_NOT_FOUND, config_error, fail, obj
from ehr_bridge.errors import ConfigError
from ehr_bridge.store import ReferralRow, Store
from ehr_bridge.sync.connection import Connection, build_connections

_NHS_NUMBER = re.compile(r"\d{3} ?\d{3} ?\d{4}")


def store_of(ctx: typer.Context) -> Store:
    """The state store, or exit 2 naming the config problem."""
    try:
        return obj(ctx).store()
    except ConfigError as exc:
        raise config_error(exc) from None


def connections_of(ctx: typer.Context, name: str | None) -> list[Connection]:
    """The enabled connections (or the one named), built as a sync would; exit 2 if none."""
    try:
        found = build_connections(obj(ctx).config(), name)
    except ConfigError as exc:
        raise config_error(exc) from None
    if not found:
        raise fail("no enabled connection in the config ([[connection]])", EXIT_CONFIG)
    return found


def connection_named(ctx: typer.Context, name: str) -> Connection:
    """One connection by name (a quarantine entry's, say); exit 2 if it is not configured."""
    return connections_of(ctx, name)[0]


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
