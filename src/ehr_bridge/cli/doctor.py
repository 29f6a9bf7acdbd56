"""`ehr-bridge doctor`: every check of an installation, a line each, with the fix.

Trust IT runs it after installing and from their monitoring. It changes nothing: no folder
or database is created, nothing is written to either side. Exit 0 when nothing failed
(warnings allowed), 1 when a check failed, 2 when the config cannot be read at all or
``--connection`` names no connection (docs/cli.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ehr_bridge.cli.context import EXIT_CONFIG, EXIT_FAILED, config_error, obj, print_json
from ehr_bridge.cli.text import printable
from ehr_bridge.config import DEFAULT_CONFIG_NAME
from ehr_bridge.errors import ConfigError
from ehr_bridge.observability.doctor import DEFAULT_TIMEOUT, Report, run_doctor


def doctor(
    ctx: typer.Context,
    connection: Annotated[
        str | None, typer.Option("--connection", "-c", help="Only this connection.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    unit: Annotated[
        Path | None,
        typer.Option(
            "--unit",
            help="The systemd unit file (default: the installed ehr-bridge.service).",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(min=0.1, max=60, help="Deadline of each call to a trust or provider (s)."),
    ] = DEFAULT_TIMEOUT,
) -> None:
    """Check config, keys, database, disk, systemd unit, mappings, credentials, TLS and reach."""
    cli = obj(ctx)
    path = cli.config_path or Path(os.environ.get("EHR_BRIDGE_CONFIG", DEFAULT_CONFIG_NAME))
    try:
        report = run_doctor(
            path, config_exit=EXIT_CONFIG, only=connection, unit=unit, timeout=timeout
        )
    except ConfigError as exc:  # --connection names no connection
        raise config_error(exc) from None
    _print(report, as_json)
    if report.unreadable:
        raise typer.Exit(EXIT_CONFIG)
    if report.failed:
        raise typer.Exit(EXIT_FAILED)


def _print(report: Report, as_json: bool) -> None:
    if as_json:
        print_json([check.as_dict() for check in report.checks])
        return
    for check in report.checks:
        typer.echo(printable(check.line()))
    typer.echo(report.summary())
