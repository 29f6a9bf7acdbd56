"""`sync` (one cycle, or until idle) and `run` (the daemon, with /healthz, /metrics, alerts)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from ehr_bridge.cli.context import EXIT_FAILED, CliContext, config_error, obj, print_json
from ehr_bridge.config import AppConfig
from ehr_bridge.errors import ConfigError
from ehr_bridge.logs import correlation, new_cycle_id, setup_logging
from ehr_bridge.observability import build_observability
from ehr_bridge.runtime import settle_heap
from ehr_bridge.sync.connection import Connection, build_connections
from ehr_bridge.sync.cycle import FLOWS, run_cycle
from ehr_bridge.sync.scheduler import Service, run_daemon

ConnectionOpt = Annotated[
    str | None, typer.Option("--connection", "-c", help="Only this connection.")
]


class LogFormat(StrEnum):
    """How log lines are written: for people, or one JSON object per line for collectors."""

    text = "text"
    json = "json"


LogFormatOpt = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        envvar="EHR_BRIDGE_LOG_FORMAT",
        help="text (default) or json: one JSON object per line, same redaction.",
    ),
]


def _start(
    cli: CliContext, connection: str | None, log_format: LogFormat
) -> tuple[AppConfig, list[Connection]]:
    """Config, logging and connections, every problem a configuration error (exit 2)."""
    try:
        config = cli.config()
        setup_logging(
            config.logging.level,
            config.resolve(config.logging.file) if config.logging.file else None,
            log_format=log_format.value,
        )
        connections = build_connections(config, connection)
    except ConfigError as exc:
        raise config_error(exc) from None
    settle_heap()  # after the mappings and adapters are loaded: see ehr_bridge.runtime
    return config, connections


def sync(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run exactly one cycle.")] = False,
    connection: ConnectionOpt = None,
    flow: Annotated[
        list[str] | None, typer.Option("--flow", help="Only these flows (pull, deliver, ...).")
    ] = None,
    max_cycles: Annotated[int, typer.Option(help="Without --once: stop after this many.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    log_format: LogFormatOpt = LogFormat.text,
) -> None:
    """Run the flows now: one cycle with --once, else cycles until nothing is left to do."""
    cli = obj(ctx)
    flows = flow or list(FLOWS)
    unknown = sorted(set(flows) - set(FLOWS))
    if unknown:
        raise typer.BadParameter(f"unknown flow {unknown[0]!r}; choose from {', '.join(FLOWS)}")
    _, connections = _start(cli, connection, log_format)
    store = cli.store()
    reports: dict[str, list[dict[str, Any]]] = {c.name: [] for c in connections}
    for _ in range(1 if once else max_cycles):
        busy = False
        for conn in connections:
            with correlation(cycle=new_cycle_id()):
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


def run(
    ctx: typer.Context, connection: ConnectionOpt = None, log_format: LogFormatOpt = LogFormat.text
) -> None:
    """Run as a daemon: each flow on its interval until SIGTERM/SIGINT.

    It also serves /healthz and /metrics on the loopback port set in the config's
    observability section, and sends one alert per incident to the webhook or e-mail
    configured there.
    """
    cli = obj(ctx)
    config, connections = _start(cli, connection, log_format)
    schedules = {c.name: c.schedule for c in config.connection}
    store = cli.store()
    ours = {c.name: schedules[c.name] for c in connections}
    try:
        services: list[Service] = [build_observability(config.observability, ours, store)]
        run_daemon([(c, schedules[c.name]) for c in connections], store, services=services)
    except ConfigError as exc:
        raise config_error(exc) from None
