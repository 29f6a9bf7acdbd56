"""`ehr-bridge adapters list`: the registered adapters, what each can do, and for support.

Each trust adapter's ``support`` line says what `reconcile` and `quarantine retry` can do
with it: always (its spec declares the read-back capabilities), only where the connection's
mapping declares the read endpoints (``mapping_capabilities``: the generic ``rest``
adapter), or never, with what support staff do instead.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ehr_bridge.adapters.registry import AdapterSpec, available
from ehr_bridge.cli import tables
from ehr_bridge.cli.context import obj, print_json, print_table

app = typer.Typer(help="Adapters that connections can use.", no_args_is_help=True)

#: the support commands and the capability each needs from a trust adapter
SUPPORT_COMMANDS = (
    ("read_items", "reconcile"),
    ("update_items", "reconcile --repair --force"),
    ("fetch_referral", "quarantine retry"),
)
#: what support staff do instead, where a trust adapter lacks the capability
INSTEAD = {
    "read_items": "instead of reconcile, confirm at the trust by the trust ids `referrals show` "
    "lists, and `outbox cancel` what must not be written",
    "fetch_referral": "instead of quarantine retry, a referral fixed at the trust comes in "
    "with the next pull (or `quarantine dismiss`)",
}
#: each capability is whole (wrapped between them, never inside one)
ADAPTER_COLUMNS: list[str | tables.Column] = [
    "name",
    "serves",
    tables.text("capabilities", 12, min_width=22),
    tables.text("description", 4, min_width=20),
    tables.optional("from", 1),
]


def support_line(spec: AdapterSpec) -> str:
    """What the support commands can do with a trust adapter ("" for a provider adapter)."""
    if "trust" not in spec.roles:
        return ""
    always = [cmd for cap, cmd in SUPPORT_COMMANDS if cap in spec.capabilities]
    by_mapping = [cmd for cap, cmd in SUPPORT_COMMANDS if cap in spec.mapping_capabilities]
    declared = spec.capabilities | spec.mapping_capabilities
    parts = [", ".join(always)] if always else []
    if by_mapping:
        parts.append(f"{', '.join(by_mapping)} where the mapping's api: gives read endpoints")
    parts += [text for cap, text in INSTEAD.items() if cap not in declared]
    return "; ".join(parts)


@app.command("list")
def adapters_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The registered adapters, the side each can serve, what each can do, and for support."""
    data = [_entry(spec) for spec in available()]
    if as_json:
        print_json(data)
        return
    rows = [
        [
            d["name"],
            ", ".join(d["roles"]),
            ", ".join(d["capabilities"]),
            d["description"],
            d["origin"],
        ]
        for d in data
    ]
    console = obj(ctx).console
    print_table(console, "adapters", ADAPTER_COLUMNS, rows)
    for d in data:  # under the table, so that no capability is split across lines
        if d["mapping_capabilities"]:
            tables.print_wrapped(console, _mapping_text(d), indent=2, hang=2)
    console.print("support commands, by trust adapter:", highlight=False, markup=False)
    for d in data:
        if d["support"]:
            tables.print_wrapped(console, f"{d['name']}: {d['support']}", indent=2, hang=2)


def _entry(spec: AdapterSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "roles": sorted(spec.roles),
        "capabilities": sorted(spec.capabilities),
        "mapping_capabilities": sorted(spec.mapping_capabilities),
        "support": support_line(spec),
        "description": spec.description,
        "origin": spec.origin,
    }


def _mapping_text(entry: dict[str, Any]) -> str:
    caps = ", ".join(entry["mapping_capabilities"])
    return f"{entry['name']}: if the mapping declares them, also {caps}"
