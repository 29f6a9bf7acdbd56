"""`sync` (one cycle, or until idle) and `run` (the daemon, with /healthz, /metrics, alerts).

Both run each connection in a thread of its own (``sync``) or on an executor of its own
(``run``), so one slow trust never delays another, and both stop within seconds on
SIGTERM or SIGINT (docs/operations.md, "Deadlines and stopping"). ``run`` started before
its state database can be opened or written waits for it, saying so in the log and on
``/healthz``, instead of exiting. ``run`` refuses to start (exit 2) beside another daemon
on the same SQLite file (``sync.daemon_lock``) or on a metrics port already taken.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from ehr_bridge.cli.context import EXIT_FAILED, CliContext, config_error, fail, obj, print_json
from ehr_bridge.cli.support import choose, known_connection
from ehr_bridge.config import AppConfig, ScheduleConfig
from ehr_bridge.errors import ConfigError
from ehr_bridge.logs import setup_logging
from ehr_bridge.observability import (
    HealthChecker,
    HealthReport,
    ObservabilityServer,
    RiskPolicy,
    build_observability,
)
from ehr_bridge.runtime import settle_heap
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection, build_connections
from ehr_bridge.sync.cycle import FLOWS, cycles_until_idle, side_by_side
from ehr_bridge.sync.daemon_lock import DaemonLock
from ehr_bridge.sync.retention import RetentionJob
from ehr_bridge.sync.scheduler import Service, free_orphaned_leases, run_daemon, stop_on_signals
from ehr_bridge.sync.startup import database_fault, until_ready

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


class LogLevel(StrEnum):
    """The least severe log lines written (``[logging] level`` unless given)."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


LogLevelOpt = Annotated[
    LogLevel | None,
    typer.Option(
        "--log-level",
        envvar="EHR_BRIDGE_LOG_LEVEL",
        case_sensitive=False,
        help="DEBUG, INFO, WARNING or ERROR (default: [logging] level); no patient data at any.",
    ),
]


def log_level_of(config: AppConfig, given: LogLevel | None) -> str:
    """``--log-level`` if given, else the config's ``[logging] level``."""
    return given.value if given is not None else config.logging.level


def _start(
    cli: CliContext, connection: str | None, log_format: LogFormat, log_level: LogLevel | None
) -> tuple[AppConfig, list[Connection]]:
    """Config, logging and connections, every problem a configuration error (exit 2)."""
    try:
        config = cli.config()
        setup_logging(
            log_level_of(config, log_level),
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
    log_level: LogLevelOpt = None,
) -> None:
    """Run the flows now: one cycle with --once, else cycles until nothing is left to do."""
    cli = obj(ctx)
    flows = flow or list(FLOWS)
    for name in flows:
        choose(name, FLOWS, "--flow", "flow")
    known_connection(ctx, connection)
    _, connections = _start(cli, connection, log_format, log_level)
    try:
        store = cli.store()
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"the state database is unavailable ({database_fault(exc)})") from None
    most = 1 if once else max_cycles
    with stop_on_signals(threading.Event()) as stop:
        reports = side_by_side(
            connections,
            lambda conn: cycles_until_idle(conn, store, stop, flows=flows, most=most),
        )
    failed = any(
        "error" in r for runs in reports.values() for cycle in runs for r in cycle.values()
    )
    if as_json:
        print_json(reports)
    else:
        _print_reports(cli.console, reports)
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _print_reports(console: Any, reports: dict[str, list[dict[str, Any]]]) -> None:
    for name, cycles in reports.items():
        for number, report in enumerate(cycles, start=1):
            console.print(f"[bold]{name}[/bold] cycle {number}")
            for flow_name, counts in report.items():
                text = ", ".join(f"{k} {v}" for k, v in counts.items())
                console.print(f"  {flow_name:8} {text}", highlight=False)


def run(
    ctx: typer.Context,
    connection: ConnectionOpt = None,
    log_format: LogFormatOpt = LogFormat.text,
    log_level: LogLevelOpt = None,
) -> None:
    """Run as a daemon: each flow on its interval until SIGTERM/SIGINT.

    It also serves /healthz and /metrics on the loopback port set in the config's
    observability section, sends one alert per incident to the webhook or e-mail
    configured there, and with ``[security] retention_days`` set runs the retention purge
    every ``retention_interval_hours``. A second daemon on the same SQLite file, or a port
    already taken, stops it at start-up with exit 2.
    """
    cli = obj(ctx)
    known_connection(ctx, connection)
    config, connections = _start(cli, connection, log_format, log_level)
    schedules = {c.name: c.schedule for c in config.connection}
    ours = {c.name: schedules[c.name] for c in connections}
    lock = DaemonLock.for_config(config)
    ctx.call_on_close(lock.release)  # held until then: the process's life, under the CLI
    with stop_on_signals(threading.Event()) as stop:
        store = _store_when_ready(cli, config, ours, stop, lock)
        if store is None:
            return  # stopped before the database came
        try:
            policy = {
                c.name: RiskPolicy(c.risk_acknowledge_minutes, c.risk_repeat_minutes)
                for c in connections
            }
            observability = build_observability(
                config.observability, ours, store, risk_policy=policy
            )
            services: list[Service] = [observability]
            retention = None
            if config.security.retention_days is not None:
                retention = RetentionJob(connections, store, config.security)
            run_daemon(
                [(c, schedules[c.name]) for c in connections],
                store,
                stop,
                services=services,
                leases_freed=True,
                retention=retention,
            )
        except ConfigError as exc:
            raise config_error(exc) from None


class _WaitingHealth(HealthChecker):
    """``/healthz`` while the daemon waits for its database: not ready, and why."""

    def __init__(self, connections: Sequence[str]) -> None:  # no store to ask yet
        self._names = list(connections)
        self.reason = "unavailable"

    @property
    def connections(self) -> Sequence[str]:
        """The connections the daemon will run."""
        return self._names

    def check(self) -> HealthReport:
        """Not ready: every connection waits for the state database."""
        problem = f"waiting for the state database ({self.reason})"
        waiting = {
            n: {"status": "waiting", "flows": {}, "problems": [problem]} for n in self._names
        }
        return HealthReport(ready=False, database=False, connections=waiting)


def _store_when_ready(
    cli: CliContext,
    config: AppConfig,
    schedules: Mapping[str, ScheduleConfig],
    stop: threading.Event,
    lock: DaemonLock,
) -> Store | None:
    """The lock taken, the store opened and its dead leases freed, however long it takes.

    While it waits, ``/healthz`` answers 503 "waiting" with the reason (if enabled).
    Another daemon holding the lock is a ConfigError: exit 2 at once, no waiting.
    """
    health = _WaitingHealth(list(schedules))
    server: ObservabilityServer | None = None

    def waiting(reason: str) -> None:
        nonlocal server
        health.reason = reason
        if server is None and config.observability.enabled:
            where = config.observability
            server = ObservabilityServer(where.host, where.port, CollectorRegistry(), health)
            server.start()

    def ready() -> Store:
        lock.acquire()
        store = cli.store()
        free_orphaned_leases(store)
        return store

    try:
        return until_ready(ready, stop, what="start-up", on_wait=waiting)
    except ConfigError as exc:
        raise config_error(exc) from None
    finally:
        if server is not None:
            server.stop()
