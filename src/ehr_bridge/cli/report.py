"""`ehr-bridge report`: outcomes, waits, activity and governance, per connection and period.

Each command prints tables by default, ``--json`` or ``--csv`` for scripts and
spreadsheets, or writes a self-contained HTML page with ``--html FILE``. ``report all``
gives every report at once. Figures use the national NHS Talking Therapies definitions
(docs/reports.md); the ``[reports]`` config section holds the ADSM switch and the
governance phrase lists, and each connection's ``[connection.risk]`` window decides which
of its risks the governance report counts as overdue. Nothing printed identifies a
patient: episodes are named by the trust's referral id, notes appear only as phrase
counts and risks only as counts and times.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from ehr_bridge.cli.context import EXIT_CONFIG, config_error, fail, obj, print_json
from ehr_bridge.cli.support import choose, known_connection
from ehr_bridge.config import AppConfig, ConnectionConfig
from ehr_bridge.errors import ConfigError
from ehr_bridge.reports import (
    CSV_COLUMNS,
    REPORTS,
    ConnectionReports,
    Period,
    csv_rows,
    options_from_config,
    print_headline,
    print_report,
    render_page,
    report_json,
    reports_from_store,
)
from ehr_bridge.reports.waits import COHORTS, Cohort
from ehr_bridge.security.files import write_private

app = typer.Typer(
    help="Outcomes, waiting times, activity and governance reports.", no_args_is_help=True
)

ConnectionOpt = Annotated[
    str | None, typer.Option("--connection", "-c", help="Only this connection.")
]
FromOpt = Annotated[
    str | None, typer.Option("--from", help="First day of the period, YYYY-MM-DD (inclusive).")
]
ToOpt = Annotated[
    str | None, typer.Option("--to", help="Last day of the period, YYYY-MM-DD (inclusive).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Long-format CSV on standard output.")]
HtmlOpt = Annotated[
    Path | None,
    typer.Option("--html", metavar="FILE", help="Write a self-contained HTML page to FILE."),
]
CohortOpt = Annotated[
    str,
    typer.Option(
        "--cohort",
        help="finished: referrals that finished treatment in the period (national);"
        " started: first treatment session in the period.",
    ),
]


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise fail(f"{option}: not a date (YYYY-MM-DD)", EXIT_CONFIG) from None


def _period(first: str | None, last: str | None) -> Period:
    period = Period(_day(first, "--from"), _day(last, "--to"))
    if period.first and period.last and period.first > period.last:
        raise fail("--from is after --to", EXIT_CONFIG)
    return period


def _connections(config: AppConfig, connection: str | None) -> list[ConnectionConfig]:
    if connection:
        return [config.get_connection(connection)]
    if not config.connection:
        raise ConfigError("no connection configured", key="connection")
    return list(config.connection)


def _build(
    ctx: typer.Context, connection: str | None, period: Period, cohort: str
) -> list[ConnectionReports]:
    choose(cohort, COHORTS, "--cohort", "cohort")
    chosen: Cohort = "started" if cohort == "started" else "finished"
    known_connection(ctx, connection)
    cli = obj(ctx)
    try:
        config = cli.config()
        connections = _connections(config, connection)
        store = cli.store()
    except ConfigError as exc:
        raise config_error(exc) from None
    options = options_from_config(config.reports, period, chosen)
    now = datetime.now(UTC)  # one "open now" for every connection of the run
    return [reports_from_store(store, c.name, options, risk=c.risk, now=now) for c in connections]


def _emit(
    ctx: typer.Context,
    reports: list[ConnectionReports],
    names: Sequence[str],
    output: tuple[bool, bool, Path | None],
) -> None:
    as_json, as_csv, html = output
    if as_json:
        print_json([_json_of(r, names) for r in reports])
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in reports:
            for name in names:
                writer.writerows(csv_rows(r, name))
    elif html is not None:
        try:
            write_private(html, render_page(reports, datetime.now(UTC), names))
        except OSError as exc:
            raise fail(f"--html: cannot write {html} ({exc.strerror})", EXIT_CONFIG) from None
        typer.echo(f"report written to {html}")
    else:
        for r in reports:
            print_headline(obj(ctx).console, r, names)
            for name in names:
                print_report(obj(ctx).console, r, name)


def _json_of(reports: ConnectionReports, names: Sequence[str]) -> dict[str, object]:
    if len(names) == 1:
        return report_json(reports, names[0])
    combined: dict[str, object] = {"connection": reports.connection}
    for name in names:
        body = report_json(reports, name)
        body.pop("connection")
        combined["data_quality"] = body.pop("data_quality")
        combined[name] = body
    return combined


def _report(
    ctx: typer.Context,
    names: Sequence[str],
    options: tuple[str | None, str | None, str | None, str],
    output: tuple[bool, bool, Path | None],
) -> None:
    connection, first, last, cohort = options
    if sum((output[0], output[1], output[2] is not None)) > 1:
        raise fail("choose one of --json, --csv and --html", EXIT_CONFIG)
    reports = _build(ctx, connection, _period(first, last), cohort)
    _emit(ctx, reports, names, output)


@app.command("outcomes")
def outcomes(
    ctx: typer.Context,
    connection: ConnectionOpt = None,
    first: FromOpt = None,
    last: ToOpt = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    html: HtmlOpt = None,
) -> None:
    """Finished treatment, caseness, recovery, reliable improvement/deterioration/recovery."""
    _report(ctx, ["outcomes"], (connection, first, last, "finished"), (as_json, as_csv, html))


@app.command("waits")
def waits(
    ctx: typer.Context,
    connection: ConnectionOpt = None,
    first: FromOpt = None,
    last: ToOpt = None,
    cohort: CohortOpt = "finished",
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    html: HtmlOpt = None,
) -> None:
    """Referral to first treatment session: median, within 6 and 18 weeks, standards."""
    _report(ctx, ["waits"], (connection, first, last, cohort), (as_json, as_csv, html))


@app.command("activity")
def activity(
    ctx: typer.Context,
    connection: ConnectionOpt = None,
    first: FromOpt = None,
    last: ToOpt = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    html: HtmlOpt = None,
) -> None:
    """Sessions by hour and weekday, share out of office hours, DNA rate, course length."""
    _report(ctx, ["activity"], (connection, first, last, "finished"), (as_json, as_csv, html))


@app.command("governance")
def governance(
    ctx: typer.Context,
    connection: ConnectionOpt = None,
    first: FromOpt = None,
    last: ToOpt = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    html: HtmlOpt = None,
) -> None:
    """Phrase counts in notes per episode and therapist; risk events' counts and times."""
    _report(ctx, ["governance"], (connection, first, last, "finished"), (as_json, as_csv, html))


@app.command("all")
def all_reports(
    ctx: typer.Context,
    connection: ConnectionOpt = None,
    first: FromOpt = None,
    last: ToOpt = None,
    cohort: CohortOpt = "finished",
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    html: HtmlOpt = None,
) -> None:
    """Every report at once; with --html, the whole page with all four charts."""
    _report(ctx, list(REPORTS), (connection, first, last, cohort), (as_json, as_csv, html))
