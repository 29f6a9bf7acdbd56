"""The `ehr-bridge` command: one Typer sub-app per noun, shared state in ``ctx.obj``.

Each command's module is imported only when that command runs (``cli/lazy.py``), so
``ehr-bridge --help`` and a short command start quickly; ``COMMANDS`` names them all,
in the order the help lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ehr_bridge.cli.lazy import Lazy, LazyGroup
from ehr_bridge.runtime import pause_collector

CLI = "ehr_bridge.cli"

#: every command: where it lives and the line ``ehr-bridge --help`` shows for it
COMMANDS: dict[str, Lazy] = {
    "sync": Lazy(
        f"{CLI}.run:sync",
        "Run the flows now: one cycle with --once, else cycles until nothing is left to do.",
    ),
    "run": Lazy(
        f"{CLI}.run:run", "Run as a daemon: each flow on its interval until SIGTERM/SIGINT."
    ),
    "backfill": Lazy(
        f"{CLI}.backfill:backfill",
        "Pull a trust's referral history in pages; resumable, and safe beside the daemon.",
    ),
    "status": Lazy(
        f"{CLI}.listings:status",
        "Per connection: cursor, counts by state, last run of each flow, last error.",
    ),
    "demo": Lazy(
        f"{CLI}.demo:demo",
        "Start the simulator, run cycles until everything is written back, report.",
    ),
    "doctor": Lazy(
        f"{CLI}.doctor:doctor",
        "Check config, keys, database, disk, systemd unit, mappings, credentials, TLS and reach.",
    ),
    "reconcile": Lazy(
        f"{CLI}.reconcile:reconcile_command",
        "Read back what the trust holds for what we wrote; report drift per referral.",
    ),
    "referrals": Lazy(
        f"{CLI}.listings:referrals_app", "Referrals pulled from the trust and their story."
    ),
    "outbox": Lazy(f"{CLI}.listings:outbox_app", "Write-backs to the trust: pending, done, dead."),
    "quarantine": Lazy(
        f"{CLI}.listings:quarantine_app", "Records set aside, with the field and reason."
    ),
    "risk": Lazy(
        f"{CLI}.risk:app", "Risks for the trust's duty team: open, unacknowledged, overdue."
    ),
    "adapters": Lazy(f"{CLI}.adapters:app", "Adapters that connections can use."),
    "patients": Lazy(f"{CLI}.patients:app", "Patients: identity history, merges and links."),
    "audit": Lazy(f"{CLI}.audit:app", "The audit log: operator actions and writes to the trust."),
    "sim": Lazy(
        f"{CLI}.sim:app",
        "The built-in trust simulator.",
        {"help": "The built-in trust simulator."},
    ),
    "mapping": Lazy(
        f"{CLI}.mapping:app",
        "Mapping files: check, test against golden fixtures, preview a record, diff two versions.",
    ),
    "report": Lazy(
        f"{CLI}.report:app",
        "Outcomes, waits, activity, governance.",
        {"help": "Outcomes, waits, activity, governance."},
    ),
    "db": Lazy(f"{CLI}.db:app", "The state database: schema version and upgrades."),
    "keys": Lazy(f"{CLI}.keys:app", "Encryption keys for payloads at rest."),
    "retention": Lazy(
        f"{CLI}.keys:retention_app",
        "Retention of payloads (purge after reconcile).",
        {"no_args_is_help": True},
    ),
}


#: the root option that may be written anywhere on the line
WIDE_OPTION = "--wide"


class RootGroup(LazyGroup):
    """The root group: ``COMMANDS``, each imported when run.

    ``--wide`` is taken wherever it is written, as kubectl's flags are:
    ``ehr-bridge outbox list --wide`` and ``ehr-bridge --wide outbox list`` mean the
    same; an argument after ``--`` is left alone.
    """

    lazy = COMMANDS

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        """Move ``--wide`` in front of the subcommand, where the root option reads it."""
        end = args.index("--") if "--" in args else len(args)
        if WIDE_OPTION in args[:end]:
            head = [a for a in args[:end] if a != WIDE_OPTION]
            args = [WIDE_OPTION, *head, *args[end:]]
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="ehr-bridge",
    help="Connects NHS Talking Therapies record systems with online therapy providers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=RootGroup,
)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="EHR_BRIDGE_CONFIG",
            help="Config file (default ./ehr-bridge.toml).",
        ),
    ] = None,
    wide: Annotated[
        bool,
        typer.Option(
            "--wide",
            envvar="EHR_BRIDGE_WIDE",
            help="Tables show every column whole, however wide (may follow the command).",
        ),
    ] = False,
) -> None:
    """Shared options; the config is read only by commands that need it."""
    from ehr_bridge.cli.context import CliContext  # imported when a command runs

    ctx.obj = CliContext(config_path=config, wide=wide)
    ctx.call_on_close(ctx.obj.close)


def main() -> None:
    """Console-script entry point (the collector pauses while the command is imported)."""
    pause_collector()
    app()
