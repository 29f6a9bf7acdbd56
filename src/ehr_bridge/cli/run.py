"""`sync` (one cycle, or until idle) and `run` (the daemon)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ehr_bridge.cli.context import EXIT_FAILED, config_error, obj, print_json
from ehr_bridge.errors import ConfigError
from ehr_bridge.logs import setup_logging
from ehr_bridge.sync.connection import build_connections
from ehr_bridge.sync.cycle import FLOWS, run_cycle
from ehr_bridge.sync.scheduler import run_daemon

ConnectionOpt = Annotated[
    str | None, typer.Option("--connection", "-c", help="Only this connection.")
]


def sync(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run exactly one cycle.")] = False,
    connection: ConnectionOpt = None,
    flow: Annotated[
        list[str] | None, typer.Option("--flow", help="Only these flows (pull, deliver, ...).")
    ] = None,
    max_cycles: Annotated[int, typer.Option(help="Without --once: stop after this many.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run the flows now: one cycle with --once, else cycles until nothing is left to do."""
    cli = obj(ctx)
    flows = flow or list(FLOWS)
    unknown = sorted(set(flows) - set(FLOWS))
    if unknown:
        raise typer.BadParameter(f"unknown flow {unknown[0]!r}; choose from {', '.join(FLOWS)}")
    try:
        config = cli.config()
        setup_logging(
            config.logging.level,
            config.resolve(config.logging.file) if config.logging.file else None,
        )
        connections = build_connections(config, connection)
    except ConfigError as exc:
        raise config_error(exc) from None
    store = cli.store()
    reports: dict[str, list[dict[str, Any]]] = {c.name: [] for c in connections}
    for _ in range(1 if once else max_cycles):
        busy = False
        for conn in connections:
            report = run_cycle(conn, store, flows=flows)
            reports[conn.name].append(report)
            busy = busy or _did_something(report)
        if not busy:
            break
    failed = any(
        "error" in r for runs in reports.values() for cycle in runs for r in cycle.values()
    )
    if as_json:
        print_json(reports)
    else:
        _print_reports(cli.console, reports)
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _did_something(report: dict[str, Any]) -> bool:
    quiet = {"seen", "unchanged", "pages", "submissions", "already_stored"}
    return any(
        isinstance(v, int) and v and k not in quiet
        for counts in report.values()
        for k, v in counts.items()
    )


def _print_reports(console: Any, reports: dict[str, list[dict[str, Any]]]) -> None:
    for name, cycles in reports.items():
        for number, report in enumerate(cycles, start=1):
            console.print(f"[bold]{name}[/bold] cycle {number}")
            for flow_name, counts in report.items():
                text = ", ".join(f"{k} {v}" for k, v in counts.items())
                console.print(f"  {flow_name:8} {text}", highlight=False)


def run(ctx: typer.Context, connection: ConnectionOpt = None) -> None:
    """Run as a daemon: each flow on its interval until SIGTERM/SIGINT."""
    cli = obj(ctx)
    try:
        config = cli.config()
        setup_logging(
            config.logging.level,
            config.resolve(config.logging.file) if config.logging.file else None,
        )
        connections = build_connections(config, connection)
    except ConfigError as exc:
        raise config_error(exc) from None
    schedules = {c.name: c.schedule for c in config.connection}
    run_daemon([(c, schedules[c.name]) for c in connections], cli.store())
