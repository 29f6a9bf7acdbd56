"""Reports as terminal tables (rich), for a service manager at the command line.

Cells are ``rich.text.Text``, never markup strings: a therapist name from the provider such
as ``[red]x`` must print as typed, not restyle the table. Each connection's output starts
with its headline (``reports.headline``), and every column has a heading of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ehr_bridge.reports.activity import WEEKDAYS, ActivityReport
from ehr_bridge.reports.build import ConnectionReports
from ehr_bridge.reports.governance import GovernanceReport, GovernanceRow
from ehr_bridge.reports.headline import REPORT_NAMES, headline
from ehr_bridge.reports.model import Rate
from ehr_bridge.reports.outcomes import OutcomeCounts, OutcomesReport
from ehr_bridge.reports.risks import RiskReport, risk_lines
from ehr_bridge.reports.waits import (
    EIGHTEEN_WEEK_STANDARD,
    SIX_WEEK_STANDARD,
    WaitsReport,
)


def _table(title: str, columns: Sequence[str], text_columns: Sequence[int] = (0,)) -> Table:
    """A table whose ``text_columns`` are left-aligned and the rest (numbers) right-aligned."""
    table = Table(title=Text(title), title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index in text_columns else "right")
    return table


def _add(table: Table, *cells: object) -> None:
    table.add_row(*(Text("" if c is None else str(c)) for c in cells))


def _pct(rate: Rate) -> str:
    value = rate.value
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _met(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "NOT met")


def print_outcomes(console: Console, connection: str, report: OutcomesReport) -> None:
    """Headline outcomes, then recovery by month of end."""
    adsm = "on" if report.adsm_enabled else "off"
    title = (
        f"Outcomes: {connection}, period (by end date) {report.period.label()}"
        f" (measures table {report.measures_version}, ADSMs {adsm})"
    )
    table = _table(title, ["figure", "count", "out of", "rate"])
    _outcome_lines(table, report.total)
    console.print(table)
    months = _table(
        "Recovery by month of end",
        ["month of end", "finished", "moved to recovery", "recovery rate"],
    )
    for month, counts in report.monthly:
        rate = counts.recovery
        _add(months, month, counts.finished, f"{rate.count} of {rate.denominator}", _pct(rate))
    if report.monthly:
        console.print(months)


def _outcome_lines(table: Table, counts: OutcomeCounts) -> None:
    _add(table, "finished a course of treatment", counts.finished, "", "")
    for label, rate in (
        ("with paired scores", counts.with_paired_scores),
        ("at caseness at start", counts.caseness_at_start),
    ):
        _add(table, label, rate.count, rate.denominator, _pct(rate))
    _add(table, "not at caseness at start", counts.not_at_caseness, "", "")
    for label, rate in (
        ("recovery (national standard 50%)", counts.recovery),
        ("reliable improvement", counts.reliable_improvement),
        ("reliable deterioration", counts.reliable_deterioration),
        ("reliable recovery", counts.reliable_recovery),
    ):
        _add(table, label, rate.count, rate.denominator, _pct(rate))


def print_waits(console: Console, connection: str, report: WaitsReport) -> None:
    """Median wait and the two standards."""
    title = f"Waits: {connection}, cohort {report.cohort}, period {report.period.label()}"
    table = _table(title, ["figure", "value", "out of", "rate", "standard"])
    _add(table, "referrals", report.referrals, "", "", "")
    median = report.median_days
    _add(table, "median days to first treatment", "n/a" if median is None else median, "", "", "")
    six, eighteen = report.within_six_weeks, report.within_eighteen_weeks
    _add(
        table,
        "within 6 weeks (42 days)",
        six.count,
        six.denominator,
        _pct(six),
        f"{SIX_WEEK_STANDARD:.0%}: {_met(report.six_week_standard_met)}",
    )
    _add(
        table,
        "within 18 weeks (126 days)",
        eighteen.count,
        eighteen.denominator,
        _pct(eighteen),
        f"{EIGHTEEN_WEEK_STANDARD:.0%}: {_met(report.eighteen_week_standard_met)}",
    )
    console.print(table)


def print_activity(console: Console, connection: str, report: ActivityReport) -> None:
    """Summary figures, then attended sessions by hour and by weekday."""
    table = _table(
        f"Activity: {connection}, period {report.period.label()}",
        ["figure", "count", "out of", "rate"],
    )
    _add(table, "appointments", report.appointments, "", "")
    _add(table, "attended", report.attended, "", "")
    dna, outside = report.dna_rate, report.outside_office_share
    _add(table, "did not attend", dna.count, dna.denominator, _pct(dna))
    _add(table, "outside 09:00-17:00 Mon-Fri", outside.count, outside.denominator, _pct(outside))
    mean = report.sessions_per_finished_episode
    _add(
        table,
        "treatment sessions per finished episode",
        report.finished_treatment_sessions,
        report.finished_episodes,
        "n/a" if mean is None else f"{mean:.2f}",
    )
    console.print(table)
    hours = _table("Attended sessions by hour (UK time)", ["hour", "sessions", "bar"], (0, 2))
    peak = max(report.by_hour) or 1
    for hour, count in enumerate(report.by_hour):
        _add(hours, f"{hour:02d}:00", count, "#" * round(20 * count / peak))
    console.print(hours)
    days = _table("Attended sessions by weekday", list(WEEKDAYS), ())
    _add(days, *report.by_weekday)
    console.print(days)


def print_governance(console: Console, connection: str, report: GovernanceReport) -> None:
    """Phrase counts per therapist, then per episode (counts only)."""
    for title, first, rows in (
        (f"Governance phrases by therapist: {connection}", "therapist", report.by_therapist),
        (f"Governance phrases by episode: {connection}", "trust referral id", report.by_episode),
    ):
        columns = [first, "all notes", "protocol", "its notes", "with a phrase", "phrase counts"]
        table = _table(title, columns, (0, 2, 5))
        for row in rows:
            _governance_lines(table, row)
        console.print(table)
    if not report.by_episode:
        console.print(Text(f"no session notes in the period ({report.period.label()})"))


def print_risks(console: Console, connection: str, report: RiskReport) -> None:
    """The risk section: counts by level, reason and cause, and the times (no ids)."""
    as_of = report.as_of.isoformat(timespec="minutes")
    title = (
        f"Risks: {connection}, raised in ehr-bridge {report.period.label()}"
        f" (open and overdue as of {as_of})"
    )
    table = _table(title, ["figure", "count", "median time", "90th percentile"])
    for label, count, median, p90 in risk_lines(report):
        _add(table, label, count, median, p90)
    console.print(table)


def _governance_lines(table: Table, row: GovernanceRow) -> None:
    first = True
    for name, counts in row.protocols.items():
        phrases = ", ".join(f"{p} {n}" for p, n in counts.phrases.items())
        _add(
            table,
            row.key if first else "",
            row.notes if first else "",
            name,
            counts.notes,
            counts.notes_with_any,
            phrases,
        )
        first = False
    if first:
        _add(table, row.key, row.notes, "(none applies)", "", "", "")


def print_headline(
    console: Console, reports: ConnectionReports, names: Sequence[str] = REPORT_NAMES
) -> None:
    """The connection's figures against their standards, a sentence per named report."""
    lines = Table.grid(padding=(0, 1))
    lines.add_column(no_wrap=True)
    lines.add_column()
    for line in headline(reports, names):
        lines.add_row(Text("-"), Text(line))
    console.print(Text(f"Headline: {reports.connection}", style="bold"))
    console.print(lines)
    console.print()


def print_report(console: Console, reports: ConnectionReports, name: str) -> None:
    """One named report (outcomes, waits, activity, governance) as tables."""
    if name == "outcomes":
        print_outcomes(console, reports.connection, reports.outcomes)
    elif name == "waits":
        print_waits(console, reports.connection, reports.waits)
    elif name == "activity":
        print_activity(console, reports.connection, reports.activity)
    else:
        print_governance(console, reports.connection, reports.governance)
        print_risks(console, reports.connection, reports.risks)
    print_quality(console, reports)


def print_quality(console: Console, reports: ConnectionReports) -> None:
    """A data-quality table when any record could not be fully used (ids only, no values)."""
    quality = reports.data_quality
    if quality.clean:
        return
    table = _table(f"Data quality: {reports.connection}", ["check", "count", "records"], (0, 2))
    unreadable = ", ".join(f"{u.resource} ({u.field})" for u in quality.unreadable)
    _add(table, "records that could not be read", len(quality.unreadable), unreadable)
    _add(table, "sessions without a time of day", quality.sessions_without_time, "")
    imprecise = ", ".join(quality.imprecise_dates)
    _add(table, "dated to a year or month only", len(quality.imprecise_dates), imprecise)
    _add(table, "scores awaiting their items", quality.scores_awaiting_items, "")
    console.print(table)


def summary_lines(reports: ConnectionReports) -> list[str]:
    """A few plain lines for the demo: outcomes, waits and out-of-hours share."""
    total = reports.outcomes.total
    waits = reports.waits
    median = "n/a" if waits.median_days is None else f"{waits.median_days:g} days"
    return [
        f"finished a course of treatment: {total.finished}"
        f" ({total.not_at_caseness} not at caseness at start)",
        f"recovery: {total.recovery.percent()} (national standard 50%)",
        f"reliable improvement: {total.reliable_improvement.percent()}",
        f"reliable deterioration: {total.reliable_deterioration.percent()}",
        f"reliable recovery: {total.reliable_recovery.percent()}",
        f"median wait to first treatment: {median};"
        f" within 6 weeks {waits.within_six_weeks.percent()},"
        f" within 18 weeks {waits.within_eighteen_weeks.percent()}",
        f"sessions outside 09:00-17:00 Mon-Fri: {reports.activity.outside_office_share.percent()}",
    ]
