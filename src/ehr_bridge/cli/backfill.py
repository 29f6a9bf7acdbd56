"""`ehr-bridge backfill`: pull a trust's history since a date, with a progress bar.

Safe beside a running daemon and safe to interrupt: run the same command again and it
resumes from its last committed page (``--restart`` starts over at ``--since``).
While the bar is shown, log lines go only to the configured log file, not the terminal.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ehr_bridge.cli.context import EXIT_FAILED, config_error, fail, obj, print_json
from ehr_bridge.cli.run import LogFormat, LogFormatOpt, LogLevelOpt, log_level_of
from ehr_bridge.cli.support import known_connection
from ehr_bridge.errors import ConfigError, EhrBridgeError
from ehr_bridge.logs import correlation, new_cycle_id, setup_logging
from ehr_bridge.runtime import settle_heap
from ehr_bridge.sync.backfill import BackfillProgress, BackfillResult
from ehr_bridge.sync.backfill import backfill as run_backfill
from ehr_bridge.sync.connection import build_connections


def parse_since(value: str) -> datetime:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 timestamp, not in the future."""
    try:
        moment = (
            datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
            if len(value) == 10
            else datetime.fromisoformat(value.replace("Z", "+00:00"))
        )
    except ValueError:
        raise typer.BadParameter("give a date as YYYY-MM-DD or an ISO 8601 time") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment > datetime.now(UTC):
        raise typer.BadParameter("is in the future")
    return moment


def backfill(
    ctx: typer.Context,
    connection: Annotated[str, typer.Option("--connection", "-c", help="The connection.")],
    since: Annotated[
        str, typer.Option(help="Pull referrals changed since this date (YYYY-MM-DD, UTC).")
    ],
    restart: Annotated[
        bool, typer.Option("--restart", help="Forget where an earlier run stopped.")
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    log_format: LogFormatOpt = LogFormat.text,
    log_level: LogLevelOpt = None,
) -> None:
    """Pull a trust's referral history in pages; resumable, and safe beside the daemon."""
    start = parse_since(since)
    cli = obj(ctx)
    known_connection(ctx, connection)
    try:
        config = cli.config()
        log_file = config.resolve(config.logging.file) if config.logging.file else None
        level = log_level_of(config, log_level)
        setup_logging(level, log_file, stderr=not progress, log_format=log_format.value)
        (conn,) = build_connections(config, connection)
    except ConfigError as exc:
        raise config_error(exc) from None
    except ValueError:  # the connection exists but is disabled
        raise fail(f"connection {connection} is disabled in the config") from None
    settle_heap()  # after the mapping and adapters are loaded: see ehr_bridge.runtime
    stop = threading.Event()
    try:
        with (
            _stop_on_signal(stop),
            _bar(Console(stderr=True), progress) as report,
            correlation(cycle=new_cycle_id()),
        ):
            result = run_backfill(
                conn, cli.store(), start, stop=stop, on_progress=report, restart=restart
            )
    except EhrBridgeError as exc:
        raise fail(f"backfill stopped: {exc.safe_message} (run it again to resume)") from None
    _print(cli.console, connection, result, as_json)
    if not result.complete:
        raise typer.Exit(EXIT_FAILED)


@contextmanager
def _stop_on_signal(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM finish the page in hand, so the next run resumes right after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _bar(console: Console, visible: bool) -> Iterator[Any]:
    """A progress bar on stderr (records, rate and ETA over the time span), or nothing.

    On stderr, so ``--json`` output on stdout stays clean for scripts.
    """
    if not visible:
        yield None
        return
    columns = (
        TextColumn("[bold]backfill[/bold]"),
        BarColumn(),
        TextColumn("{task.fields[records]} records"),
        TextColumn("{task.fields[rate]}/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("backfill", total=1000, records=0, rate="0")
        yield _updater(bar, task)


def _updater(bar: Progress, task: TaskID) -> Any:
    def update(progress: BackfillProgress) -> None:
        bar.update(
            task,
            completed=round(progress.fraction * 1000),
            records=f"{progress.counts.seen:,}",
            rate=f"{progress.rate:,.0f}",
        )

    return update


def _print(console: Any, connection: str, result: BackfillResult, as_json: bool) -> None:
    counts = result.counts
    data = {
        "connection": connection,
        "complete": result.complete,
        "resumed_from": result.resumed_from,
        "cursor": result.cursor,
        "seconds": round(result.seconds, 1),
        "seen": counts.seen,
        "stored": counts.stored,
        "unchanged": counts.unchanged,
        "quarantined": counts.quarantined,
        "pages": counts.pages,
    }
    if as_json:
        print_json(data)
        return
    state = "complete" if result.complete else "interrupted: run the same command to resume"
    resumed = f", resumed from {result.resumed_from}" if result.resumed_from else ""
    console.print(
        f"backfill of {connection} {state}{resumed}: {counts.seen} seen, {counts.stored} stored,"
        f" {counts.unchanged} unchanged, {counts.quarantined} quarantined,"
        f" {counts.pages} pages in {result.seconds:.1f} s; cursor {result.cursor}",
        highlight=False,
    )
