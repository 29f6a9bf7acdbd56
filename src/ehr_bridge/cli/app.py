"""The `ehr-bridge` command: one Typer sub-app per noun, shared state in ``ctx.obj``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ehr_bridge.cli import listings, run
from ehr_bridge.cli.adapters import app as adapters_app
from ehr_bridge.cli.audit import app as audit_app
from ehr_bridge.cli.backfill import backfill
from ehr_bridge.cli.context import CliContext
from ehr_bridge.cli.db import app as db_app
from ehr_bridge.cli.demo import demo
from ehr_bridge.cli.doctor import doctor
from ehr_bridge.cli.keys import app as keys_app
from ehr_bridge.cli.keys import retention_app
from ehr_bridge.cli.mapping import app as mapping_app
from ehr_bridge.cli.patients import app as patients_app
from ehr_bridge.cli.reconcile import reconcile_command
from ehr_bridge.cli.report import app as report_app
from ehr_bridge.cli.risk import app as risk_app
from ehr_bridge.cli.sim import app as sim_app

app = typer.Typer(
    name="ehr-bridge",
    help="Connects NHS Talking Therapies record systems with online therapy providers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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
) -> None:
    """Shared options; the config is read only by commands that need it."""
    ctx.obj = CliContext(config_path=config)
    ctx.call_on_close(ctx.obj.close)


app.command()(run.sync)
app.command()(run.run)
app.command()(backfill)
app.command()(listings.status)
app.command()(demo)
app.command()(doctor)
app.add_typer(listings.referrals_app, name="referrals")
app.add_typer(listings.outbox_app, name="outbox")
app.add_typer(listings.quarantine_app, name="quarantine")
app.add_typer(risk_app, name="risk")
app.add_typer(adapters_app, name="adapters")
app.command("reconcile")(reconcile_command)
app.add_typer(patients_app, name="patients")
app.add_typer(audit_app, name="audit")
app.add_typer(sim_app, name="sim", help="The built-in trust simulator.")
app.add_typer(mapping_app, name="mapping")
app.add_typer(report_app, name="report", help="Outcomes, waits, activity, governance.")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(retention_app, name="retention", no_args_is_help=True)


def main() -> None:
    """Console-script entry point."""
    app()
