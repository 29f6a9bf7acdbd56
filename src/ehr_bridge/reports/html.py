"""The reports as one self-contained HTML page with inline SVG charts.

The page must open from a file on a machine with no network: styles are inline, charts are
inline SVG drawn by ``reports.svg``, there is no script, and a Content-Security-Policy
(``default-src 'none'``) stops the browser fetching anything even if a later edit tried.
Every value that came from data (therapist names, ids, phrases) is HTML-escaped.
Each chart is a ``<figure id="chart-<connection>-<name>">`` so a script can cut one out
(``scripts/render-report.py --chart``) for the README image.

A service manager reads it: each connection opens with a headline (``reports.headline``:
recovery, waits, sessions and risks against their standards), every table column has a
heading of its own, and the page ends with a glossary of the terms its reports use
(``reports.glossary``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape

from ehr_bridge.reports import svg
from ehr_bridge.reports.activity import WEEKDAYS, ActivityReport
from ehr_bridge.reports.build import ConnectionReports
from ehr_bridge.reports.glossary import glossary
from ehr_bridge.reports.governance import GovernanceRow
from ehr_bridge.reports.headline import headline
from ehr_bridge.reports.model import OFFICE_CLOSES, OFFICE_OPENS, Rate
from ehr_bridge.reports.outcomes import RECOVERY_TARGET, OutcomeCounts, OutcomesReport
from ehr_bridge.reports.risks import RiskReport, risk_lines
from ehr_bridge.reports.waits import (
    EIGHTEEN_WEEK_STANDARD,
    SIX_WEEK_STANDARD,
    WaitsReport,
)

RECOVERY_COLOUR = "#1d6996"
WITHIN_SIX = "#1b7837"
WITHIN_EIGHTEEN = "#e08214"
OVER_EIGHTEEN = "#b2182b"
OFFICE_HOURS_COLOUR = "#9ecae1"
OUT_OF_HOURS_COLOUR = "#08519c"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2a30;margin:24px;
max-width:1000px}h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid
#dde3e8}h3{font-size:15px}table{border-collapse:collapse;margin:8px 0 16px}th,td{padding:3px
10px;border-bottom:1px solid #eef1f3;text-align:right}th:first-child,td:first-child,.text{
text-align:left}td:first-child{white-space:nowrap}thead th{background:#f4f7f9}
figure{margin:12px 0 20px}figcaption{font-size:12px;color:#5b6770;max-width:720px}
.meta{color:#5b6770;font-size:13px}.note{font-size:12px;color:#5b6770}
.headline{background:#f4f7f9;border-left:4px solid #1d6996;padding:4px 16px;margin:12px 0 8px}
.headline h2{margin-top:8px;border:0}.headline li{margin:4px 0}
dl{margin:8px 0}dt{font-weight:600;margin-top:10px}dd{margin:2px 0 0 16px;max-width:720px}
"""


def _pct(rate: Rate) -> str:
    value = rate.value
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _table(
    head: Sequence[str], rows: Iterable[Sequence[object]], text_columns: Sequence[int] = (0,)
) -> str:
    """A table whose ``text_columns`` are left-aligned (the rest, numbers, right-aligned).

    The first column is always text, left-aligned by the style sheet without a class.
    """

    def cell(tag: str, index: int, value: object) -> str:
        shown = escape("" if value is None else str(value))
        aligned = ' class="text"' if index and index in text_columns else ""
        return f"<{tag}{aligned}>{shown}</{tag}>"

    header = "".join(cell("th", i, h) for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _figure(connection: str, name: str, chart: svg.Chart, caption: str) -> str:
    return (
        f'<figure id="chart-{escape(connection)}-{name}">{svg.render(chart)}'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _rate_row(label: str, rate: Rate) -> list[object]:
    return [label, rate.count, rate.denominator, _pct(rate)]


def _outcome_rows(counts: OutcomeCounts) -> list[list[object]]:
    return [
        ["finished a course of treatment", counts.finished, "", ""],
        _rate_row("with paired scores", counts.with_paired_scores),
        _rate_row("at caseness at start", counts.caseness_at_start),
        ["not at caseness at start", counts.not_at_caseness, "", ""],
        _rate_row("recovery", counts.recovery),
        _rate_row("reliable improvement", counts.reliable_improvement),
        _rate_row("reliable deterioration", counts.reliable_deterioration),
        _rate_row("reliable recovery", counts.reliable_recovery),
    ]


def recovery_chart(connection: str, report: OutcomesReport) -> svg.Chart:
    """Recovery rate by month of end, against the 50% target."""
    bars = []
    for month, counts in report.monthly:
        rate = counts.recovery
        value = None if rate.value is None else rate.value * 100
        hover = f"{month}: {rate.count} of {rate.denominator} moved to recovery ({_pct(rate)})"
        above = f"{rate.count} of {rate.denominator}" if rate.denominator else ""
        bars.append(svg.Bar(month, value, RECOVERY_COLOUR, hover, above))
    return svg.Chart(
        chart_id=f"{connection}-recovery",
        title="Recovery rate by month of end",
        y_label="moved to recovery",
        bars=bars,
        percent=True,
        reference=(RECOVERY_TARGET, f"{RECOVERY_TARGET:.0%} national standard"),
    )


def _outcomes_section(connection: str, report: OutcomesReport) -> str:
    adsm = "on" if report.adsm_enabled else "off"
    monthly = [
        [m, c.finished, f"{c.recovery.count} of {c.recovery.denominator}", _pct(c.recovery)]
        for m, c in report.monthly
    ]
    return (
        "<h2>Outcomes</h2>"
        f'<p class="meta">Referrals that finished a course of treatment. Period (by end'
        f" date): {escape(report.period.label())}. Measures table"
        f" {escape(report.measures_version)},"
        f" ADSMs {adsm}.</p>"
        + _table(["figure", "count", "out of", "rate"], _outcome_rows(report.total))
        + _figure(
            connection,
            "recovery",
            recovery_chart(connection, report),
            "Recovery = at caseness at start and below caseness on PHQ-9 and the anxiety"
            " measure at the last scores; denominator finished minus not at caseness. The"
            f" dashed red line is the {RECOVERY_TARGET:.0%} national standard. Above each"
            " bar: moved to recovery of the month's denominator (in the table below when it"
            " does not fit). Months without a finished course show n/a.",
        )
        + _table(["month of end", "finished", "moved to recovery", "recovery rate"], monthly)
    )


def _wait_colour(weeks: str) -> str:
    number = 19 if weeks.endswith("+") else int(weeks)
    if number <= 6:
        return WITHIN_SIX
    return WITHIN_EIGHTEEN if number <= 18 else OVER_EIGHTEEN


def waits_chart(connection: str, report: WaitsReport) -> svg.Chart:
    """Referrals by whole weeks waited, with the 6 and 18 week lines."""
    bars = [
        svg.Bar(weeks, count, _wait_colour(weeks), f"{weeks} weeks: {count} referrals")
        for weeks, count in report.by_week()
    ]
    return svg.Chart(
        chart_id=f"{connection}-waits",
        title="Weeks from referral to first treatment session",
        y_label="referrals",
        bars=bars,
        markers=((6, "6 weeks"), (18, "18 weeks")),
    )


def _waits_section(connection: str, report: WaitsReport) -> str:
    median = "n/a" if report.median_days is None else f"{report.median_days:g}"
    rows: list[list[object]] = [
        ["referrals", report.referrals, "", "", ""],
        ["median days", median, "", "", ""],
        [
            *_rate_row("within 6 weeks (42 days)", report.within_six_weeks),
            f"{SIX_WEEK_STANDARD:.0%} {_met(report.six_week_standard_met)}",
        ],
        [
            *_rate_row("within 18 weeks (126 days)", report.within_eighteen_weeks),
            f"{EIGHTEEN_WEEK_STANDARD:.0%} {_met(report.eighteen_week_standard_met)}",
        ],
    ]
    return (
        "<h2>Waiting times</h2>"
        f'<p class="meta">Cohort: {escape(report.cohort)}. Period:'
        f" {escape(report.period.label())}."
        " A wait of exactly 42 or 126 days is within the standard.</p>"
        + _table(["figure", "value", "out of", "rate", "standard"], rows)
        + _figure(
            connection,
            "waits",
            waits_chart(connection, report),
            "Whole weeks rounded up: week 6 is 36-42 days. Green within 6 weeks, orange"
            " within 18 weeks, red over 18 weeks.",
        )
    )


def _met(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "not met")


def hours_chart(connection: str, report: ActivityReport) -> svg.Chart:
    """Attended sessions by local hour of day; the dark part of a bar is out of hours."""
    opens, closes = OFFICE_OPENS.hour, OFFICE_CLOSES.hour
    bars = []
    for hour, (count, outside) in enumerate(
        zip(report.by_hour, report.by_hour_outside, strict=True)
    ):
        hover = f"{hour:02d}:00-{hour:02d}:59: {count} sessions, {outside} out of office hours"
        stack = ((outside, OUT_OF_HOURS_COLOUR), (count - outside, OFFICE_HOURS_COLOUR))
        bars.append(svg.Bar(f"{hour:02d}", count, OFFICE_HOURS_COLOUR, hover, parts=stack))
    return svg.Chart(
        chart_id=f"{connection}-hours",
        title="Attended sessions by hour of day (UK time)",
        y_label="sessions",
        bars=bars,
        band=(opens, closes - 1, "09:00-17:00"),
    )


def weekday_chart(connection: str, report: ActivityReport) -> svg.Chart:
    """Attended sessions by weekday."""
    bars = [
        svg.Bar(day, count, OUT_OF_HOURS_COLOUR if index >= 5 else OFFICE_HOURS_COLOUR)
        for index, (day, count) in enumerate(zip(WEEKDAYS, report.by_weekday, strict=True))
    ]
    return svg.Chart(
        chart_id=f"{connection}-weekdays",
        title="Attended sessions by weekday",
        y_label="sessions",
        bars=bars,
    )


def _activity_section(connection: str, report: ActivityReport) -> str:
    mean = report.sessions_per_finished_episode
    rows = [
        ["appointments", report.appointments, "", ""],
        ["attended", report.attended, "", ""],
        _rate_row("did not attend", report.dna_rate),
        _rate_row("outside 09:00-17:00 Mon-Fri", report.outside_office_share),
        [
            "treatment sessions per finished episode",
            report.finished_treatment_sessions,
            report.finished_episodes,
            "n/a" if mean is None else f"{mean:.2f}",
        ],
    ]
    return (
        "<h2>Activity</h2>"
        f'<p class="meta">Period (by session date, UK time):'
        f" {escape(report.period.label())}.</p>"
        + _table(["figure", "count", "out of", "rate"], rows)
        + _figure(
            connection,
            "hours",
            hours_chart(connection, report),
            "By start time, UK time. Dark: outside office hours (before 09:00, from 17:00,"
            " or at the weekend); light: Monday to Friday 09:00-17:00.",
        )
        + _figure(connection, "weekdays", weekday_chart(connection, report), "")
    )


def _governance_rows(rows: Sequence[GovernanceRow]) -> list[list[object]]:
    table: list[list[object]] = []
    for row in rows:
        for name, counts in row.protocols.items():
            phrases = ", ".join(f"{p}: {n}" for p, n in counts.phrases.items())
            table.append([row.key, row.notes, name, counts.notes, counts.notes_with_any, phrases])
        if not row.protocols:
            table.append([row.key, row.notes, "(none applies)", "", "", ""])
    return table


def _governance_head(first: str) -> list[str]:
    """The phrase table's columns: a row's notes, then per protocol the notes it covers."""
    return [first, "all notes", "protocol", "protocol's notes", "with a phrase", "phrase counts"]


def _governance_section(reports: ConnectionReports) -> str:
    report = reports.governance
    return (
        "<h2>Governance phrases</h2>"
        '<p class="meta">How often each protocol\'s phrases appear in session notes.'
        f" Period (by session date): {escape(report.period.label())}. Counts only: no note"
        " text is shown or kept. All notes: the row's notes in the period; protocol's"
        " notes: those the protocol applies to (by presenting problem); with a phrase: of"
        " those, the notes with at least one of its phrases.</p><h3>By therapist</h3>"
        + _table(_governance_head("therapist"), _governance_rows(report.by_therapist), (0, 2, 5))
        + "<h3>By episode (trust referral id)</h3>"
        + _table(
            _governance_head("trust referral id"), _governance_rows(report.by_episode), (0, 2, 5)
        )
        + _risks_section(reports.risks)
    )


def _risks_section(report: RiskReport) -> str:
    """Risk events of the period: counts and times only, no referral or person named."""
    as_of = report.as_of.isoformat(timespec="minutes")
    return (
        "<h2>Risk events</h2>"
        '<p class="meta">Risks raised in ehr-bridge (by the day it recorded them):'
        f" {escape(report.period.label())}. Times run from then to delivery at the trust"
        " and to the trust's acknowledgement. Open and overdue (open past the connection's"
        f" {report.acknowledge_within_minutes:g} minute acknowledgement window) as of"
        f" {escape(as_of)}. Counts only: no referral or person is named.</p>"
        + _table(
            ["figure", "count", "median time", "90th percentile time"],
            [_indented(*line) for line in risk_lines(report)],
        )
    )


def _indented(label: str, *cells: object) -> list[object]:
    """A sub-line's leading spaces as no-break spaces, which HTML keeps visible."""
    stripped = label.lstrip(" ")
    return ["\u00a0" * 2 * (len(label) - len(stripped)) + stripped, *cells]


def _headline_section(reports: ConnectionReports, names: Sequence[str]) -> str:
    """The connection's figures against their standards, in a sentence per report."""
    lines = "".join(f"<li>{escape(line)}</li>" for line in headline(reports, names))
    return (
        f'<div class="headline" id="headline-{escape(reports.connection)}">'
        f"<h2>Headline</h2><ul>{lines}</ul></div>"
    )


def _glossary_section(names: Sequence[str]) -> str:
    """The terms the shown reports use, defined as docs/reports.md defines them."""
    entries = "".join(
        f'<dt id="{term.anchor}">{escape(term.term)}</dt><dd>{escape(term.definition)}</dd>'
        for term in glossary(names)
    )
    return f'<section id="glossary"><h2>Glossary</h2><dl>{entries}</dl></section>'


def _sections(reports: ConnectionReports, names: Sequence[str]) -> str:
    makers = {
        "outcomes": lambda: _outcomes_section(reports.connection, reports.outcomes),
        "waits": lambda: _waits_section(reports.connection, reports.waits),
        "activity": lambda: _activity_section(reports.connection, reports.activity),
        "governance": lambda: _governance_section(reports),
    }
    return "".join(makers[name]() for name in names) + _quality_section(reports)


def _quality_section(reports: ConnectionReports) -> str:
    """What could not be fully read, by internal reference; nothing when all was read."""
    quality = reports.data_quality
    if quality.clean:
        return ""
    rows = [
        [
            "records that could not be read",
            len(quality.unreadable),
            ", ".join(f"{u.resource} ({u.field})" for u in quality.unreadable),
        ],
        ["sessions without a time of day", quality.sessions_without_time, ""],
        [
            "dated to a year or month only",
            len(quality.imprecise_dates),
            ", ".join(quality.imprecise_dates),
        ],
        ["scores awaiting their items", quality.scores_awaiting_items, ""],
    ]
    return f"<h3>Data quality</h3>{_table(['check', 'count', 'records'], rows, (0, 2))}"


def render_page(
    reports: Sequence[ConnectionReports],
    generated: datetime,
    names: Sequence[str] = ("outcomes", "waits", "activity", "governance"),
) -> str:
    """The named reports for one or more connections as a standalone HTML document."""
    sections = "".join(
        f'<section id="connection-{escape(r.connection)}"><h1>{escape(r.connection)}</h1>'
        + _headline_section(r, names)
        + _sections(r, names)
        + "</section>"
        for r in reports
    )
    stamp = generated.isoformat(timespec="seconds")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>ehr-bridge: outcomes, waits, activity and governance</title>"
        f"<style>{STYLE}</style></head><body>"
        f'<p class="meta">ehr-bridge report, generated {escape(stamp)}. National NHS'
        " Talking Therapies definitions; see docs/reports.md.</p>"
        f"{sections}{_glossary_section(names)}</body></html>\n"
    )
