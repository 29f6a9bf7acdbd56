"""The headline: what a service manager reads first, each figure against its national standard.

One sentence per report shown, in plain words, above the tables of the HTML page and the
text output: recovery against the 50% national standard, waits against 75% within 6
weeks and 95% within 18 weeks, the out-of-hours share of sessions, and where the period's
risks stand. A figure with no denominator says why there is none rather than 0%. A rate
just under a standard is never rounded up to it: 49.96% is shown as 49.96%, not 50.0%.
"""

from __future__ import annotations

from collections.abc import Sequence

from ehr_bridge.reports.build import ConnectionReports
from ehr_bridge.reports.export import REPORTS
from ehr_bridge.reports.model import Rate
from ehr_bridge.reports.outcomes import RECOVERY_TARGET
from ehr_bridge.reports.waits import (
    EIGHTEEN_WEEK_STANDARD,
    EIGHTEEN_WEEKS,
    SIX_WEEK_STANDARD,
    SIX_WEEKS,
)

#: every report, in the order the pages and tables show them
REPORT_NAMES = REPORTS


def percent_against(value: float, standard: float) -> str:
    """``value`` as a percentage, with a second decimal if one would round it to the standard."""
    shown = f"{value * 100:.1f}%"
    if value < standard and round(value * 100, 1) >= standard * 100:
        shown = f"{value * 100:.2f}%"
    return shown


def _verdict(value: float, standard: float) -> str:
    return "meeting" if value >= standard else "below"


def _pct(rate: Rate) -> str:
    value = rate.value
    return "n/a" if value is None else f"{value * 100:.1f}%"


def outcomes_line(reports: ConnectionReports) -> str:
    """Recovery against the 50% national standard, then reliable improvement."""
    total = reports.outcomes.total
    recovery = total.recovery
    standard = f"{RECOVERY_TARGET:.0%} national standard"
    if recovery.value is None:
        return (
            f"Recovery: n/a. No one who finished a course of treatment in the period was at"
            f" caseness at start (the {standard} cannot be judged)."
        )
    rate = percent_against(recovery.value, RECOVERY_TARGET)
    return (
        f"Recovery {rate} ({recovery.count} of {recovery.denominator}),"
        f" {_verdict(recovery.value, RECOVERY_TARGET)} the {standard};"
        f" reliable improvement {_pct(total.reliable_improvement)}"
        f" of the {total.finished} who finished a course of treatment."
    )


def waits_line(reports: ConnectionReports) -> str:
    """The share within 6 and within 18 weeks, each against its standard, and the median."""
    waits = reports.waits
    cohort = (
        "finished a course of treatment in the period"
        if waits.cohort == "finished"
        else "started treatment in the period"
    )
    if not waits.referrals:
        return (
            f"Waits: no referral {cohort}, so the 6- and 18-week standards"
            f" ({SIX_WEEK_STANDARD:.0%} and {EIGHTEEN_WEEK_STANDARD:.0%}) cannot be judged."
        )
    parts = []
    for weeks, days, rate, standard in (
        (6, SIX_WEEKS, waits.within_six_weeks, SIX_WEEK_STANDARD),
        (18, EIGHTEEN_WEEKS, waits.within_eighteen_weeks, EIGHTEEN_WEEK_STANDARD),
    ):
        value = rate.value if rate.value is not None else 0.0
        parts.append(
            f"{percent_against(value, standard)} within {weeks} weeks ({days} days),"
            f" {_verdict(value, standard)} the {standard:.0%} standard"
        )
    median = f"{waits.median_days:g}"
    return (
        f"Waits for the {waits.referrals} referrals that {cohort}: {parts[0]}; {parts[1]};"
        f" median {median} days from referral to first treatment session."
    )


def activity_line(reports: ConnectionReports) -> str:
    """How many sessions were attended, and the share outside office hours."""
    activity = reports.activity
    outside = activity.outside_office_share
    if outside.value is None:
        return f"Activity: {activity.attended} sessions attended, none with a time of day."
    return (
        f"Activity: {activity.attended} sessions attended, {_pct(outside)} of them outside"
        f" 09:00-17:00 Monday to Friday; {_pct(activity.dna_rate)} of appointments"
        " not attended."
    )


def risks_line(reports: ConnectionReports) -> str:
    """The period's risks: raised, open, and open past the acknowledgement window."""
    risks = reports.risks
    window = f"{risks.acknowledge_within_minutes:g}"
    if not risks.raised:
        return "Risks: none raised in the period."
    return (
        f"Risks: {risks.raised} raised in the period; {risks.open} open now,"
        f" {risks.overdue} of them past the {window}-minute acknowledgement window;"
        f" {risks.not_written_total} could not be written to the trust."
    )


_LINES = {
    "outcomes": outcomes_line,
    "waits": waits_line,
    "activity": activity_line,
    "governance": risks_line,
}


def headline(reports: ConnectionReports, names: Sequence[str] = REPORT_NAMES) -> list[str]:
    """One sentence per named report, in the order the reports are shown."""
    return [_LINES[name](reports) for name in names]
