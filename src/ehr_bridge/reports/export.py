"""Reports as JSON-ready dicts and as long-format CSV rows.

JSON keeps each report's shape (counts, denominators, rates as fractions rounded to four
places). CSV is one long table for every report, ``connection, report, metric, group,
count, denominator, rate, value``, so one spreadsheet pivot reads any of them; ``group`` is
a month, an hour, a weekday, a week of waiting, an episode or a therapist where it applies.

The governance report carries the connection's risk section (``reports.risks``): in JSON
as ``risks``, in CSV as ``risks/...`` rows, counts per level, reason and cause in
``group``, durations in seconds in ``value``. Counts and codes only, never a referral.

Every report carries its connection's data-quality block (``reports.quality``): in JSON as
``data_quality``, in CSV as ``data_quality/...`` rows (one per unreadable resource, grouped
by its internal reference, the field at fault as the value), plus the count of scores held
waiting for their items.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ehr_bridge.reports.activity import WEEKDAYS, ActivityReport
from ehr_bridge.reports.build import ConnectionReports
from ehr_bridge.reports.governance import GovernanceReport, GovernanceRow
from ehr_bridge.reports.model import Period, Rate
from ehr_bridge.reports.outcomes import OutcomeCounts, OutcomesReport
from ehr_bridge.reports.quality import DataQuality
from ehr_bridge.reports.risks import Durations, RiskReport
from ehr_bridge.reports.waits import (
    EIGHTEEN_WEEK_STANDARD,
    SIX_WEEK_STANDARD,
    WaitsReport,
)

JsonDict = dict[str, Any]
CSV_COLUMNS = (
    "connection",
    "report",
    "metric",
    "group",
    "count",
    "denominator",
    "rate",
    "value",
)
REPORTS = ("outcomes", "waits", "activity", "governance")
Row = tuple[Any, ...]


def rounded(value: float | None) -> float | None:
    """Four decimal places, so JSON and CSV agree and tests can compare exactly."""
    return None if value is None else round(value, 4)


def rate_json(rate: Rate) -> JsonDict:
    """``{"count", "denominator", "rate"}``."""
    return {"count": rate.count, "denominator": rate.denominator, "rate": rounded(rate.value)}


def period_json(period: Period) -> JsonDict:
    """``{"from", "to"}`` as ISO dates or null."""
    return {
        "from": period.first.isoformat() if period.first else None,
        "to": period.last.isoformat() if period.last else None,
    }


def counts_json(counts: OutcomeCounts) -> JsonDict:
    """The national outcome figures of one set of finished referrals."""
    return {
        "finished_treatment": counts.finished,
        "with_paired_scores": rate_json(counts.with_paired_scores),
        "at_caseness_at_start": rate_json(counts.caseness_at_start),
        "not_at_caseness_at_start": counts.not_at_caseness,
        "recovery": rate_json(counts.recovery),
        "reliable_improvement": rate_json(counts.reliable_improvement),
        "reliable_deterioration": rate_json(counts.reliable_deterioration),
        "reliable_recovery": rate_json(counts.reliable_recovery),
    }


def outcomes_json(report: OutcomesReport) -> JsonDict:
    """Outcomes for the period plus one entry per month of end."""
    return {
        "period": period_json(report.period),
        "measures_version": report.measures_version,
        "adsm_enabled": report.adsm_enabled,
        **counts_json(report.total),
        "monthly": [{"month": m, **counts_json(c)} for m, c in report.monthly],
    }


def waits_json(report: WaitsReport) -> JsonDict:
    """Median, shares within 6 and 18 weeks, the standards and the distribution."""
    return {
        "period": period_json(report.period),
        "cohort": report.cohort,
        "referrals": report.referrals,
        "median_days": report.median_days,
        "within_6_weeks": rate_json(report.within_six_weeks),
        "within_18_weeks": rate_json(report.within_eighteen_weeks),
        "standards": {
            "6_weeks": {"target": SIX_WEEK_STANDARD, "met": report.six_week_standard_met},
            "18_weeks": {
                "target": EIGHTEEN_WEEK_STANDARD,
                "met": report.eighteen_week_standard_met,
            },
        },
        "by_week": [{"weeks": w, "referrals": n} for w, n in report.by_week()],
    }


def activity_json(report: ActivityReport) -> JsonDict:
    """Sessions by hour and weekday, out-of-hours share, DNA rate, course length."""
    return {
        "period": period_json(report.period),
        "appointments": report.appointments,
        "attended": report.attended,
        "did_not_attend": rate_json(report.dna_rate),
        "outside_office_hours": rate_json(report.outside_office_share),
        "by_hour": {f"{h:02d}": n for h, n in enumerate(report.by_hour)},
        "by_hour_outside_office": {f"{h:02d}": n for h, n in enumerate(report.by_hour_outside)},
        "by_weekday": dict(zip(WEEKDAYS, report.by_weekday, strict=True)),
        "attended_without_time": report.attended_without_time,
        "finished_episodes": report.finished_episodes,
        "attended_treatment_sessions": report.finished_treatment_sessions,
        "sessions_per_finished_episode": rounded(report.sessions_per_finished_episode),
    }


def _row_json(row: GovernanceRow) -> JsonDict:
    """One governance row: notes and, per protocol, notes, notes with any phrase, counts."""
    return {
        "notes": row.notes,
        "protocols": {
            name: {
                "notes": c.notes,
                "notes_with_any": c.notes_with_any,
                "phrases": dict(c.phrases),
            }
            for name, c in row.protocols.items()
        },
    }


def governance_json(report: GovernanceReport) -> JsonDict:
    """Phrase counts per episode and per therapist (counts only, never text)."""
    return {
        "period": period_json(report.period),
        "protocols": [
            {"name": p.name, "phrases": list(p.phrases), "problems": list(p.problems)}
            for p in report.protocols
        ],
        "by_episode": [
            {"referral": r.key, "therapists": sorted(r.therapists), **_row_json(r)}
            for r in report.by_episode
        ],
        "by_therapist": [{"therapist": r.key, **_row_json(r)} for r in report.by_therapist],
    }


def _durations_json(durations: Durations) -> JsonDict:
    return {
        "count": durations.count,
        "median_seconds": rounded(durations.median),
        "p90_seconds": rounded(durations.p90),
    }


def risks_json(report: RiskReport) -> JsonDict:
    """The risk section: counts by level, reason and cause, times in seconds; no ids."""
    return {
        "as_of": report.as_of.isoformat(timespec="seconds"),
        "acknowledge_within_minutes": report.acknowledge_within_minutes,
        "raised": report.raised,
        "by_level": dict(report.by_level),
        "by_reason": dict(report.by_reason),
        "from_quarantine": report.from_quarantine,
        "not_written": {"total": report.not_written_total, **dict(report.not_written)},
        "delivered": _durations_json(report.delivered),
        "acknowledged": _durations_json(report.acknowledged),
        "resolved": report.resolved,
        "open": report.open,
        "overdue": report.overdue,
        "alerts_sent": report.alerts_sent,
    }


def quality_json(quality: DataQuality) -> JsonDict:
    """What could not be read (internal references and fields only), and partial dates."""
    return {
        "unreadable": [{"resource": u.resource, "field": u.field} for u in quality.unreadable],
        "sessions_without_time": quality.sessions_without_time,
        "imprecise_dates": list(quality.imprecise_dates),
        "scores_awaiting_items": quality.scores_awaiting_items,
    }


def report_json(reports: ConnectionReports, name: str) -> JsonDict:
    """One named report of a connection, with the connection's name and data quality."""
    makers = {
        "outcomes": lambda: outcomes_json(reports.outcomes),
        "waits": lambda: waits_json(reports.waits),
        "activity": lambda: activity_json(reports.activity),
        "governance": lambda: {
            **governance_json(reports.governance),
            "risks": risks_json(reports.risks),
        },
    }
    body = makers[name]()
    return {
        "connection": reports.connection,
        **body,
        "data_quality": quality_json(reports.data_quality),
    }


def csv_rows(reports: ConnectionReports, name: str) -> Iterator[Row]:
    """The long-format rows of one named report, every text cell spreadsheet-safe."""
    makers = {
        "outcomes": _outcome_rows,
        "waits": _wait_rows,
        "activity": _activity_rows,
        "governance": _governance_rows,
    }
    for row in (*makers[name](reports), *_quality_rows(reports.data_quality)):
        yield tuple(safe_cell(cell) for cell in (reports.connection, name, *row))


def _quality_rows(quality: DataQuality) -> Iterator[Row]:
    yield _count_row("data_quality/unreadable", "", len(quality.unreadable))
    for item in quality.unreadable:
        yield _value_row("data_quality/unreadable_resource", item.resource, item.field)
    yield _count_row("data_quality/sessions_without_time", "", quality.sessions_without_time)
    yield _count_row("data_quality/imprecise_dates", "", len(quality.imprecise_dates))
    yield _count_row("data_quality/scores_awaiting_items", "", quality.scores_awaiting_items)


def safe_cell(cell: object) -> object:
    """A text cell that a spreadsheet will not run as a formula; other values unchanged.

    Therapist names come from the provider, so ``=HYPERLINK(...)`` must arrive as text.
    """
    if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + cell
    return cell


def _rate_row(metric: str, group: str, rate: Rate) -> Row:
    return (metric, group, rate.count, rate.denominator, rounded(rate.value), None)


def _count_row(metric: str, group: str, count: int) -> Row:
    return (metric, group, count, None, None, None)


def _value_row(metric: str, group: str, value: object) -> Row:
    return (metric, group, None, None, None, value)


def _outcome_rows(reports: ConnectionReports) -> Iterator[Row]:
    yield from _counts_rows(reports.outcomes.total, "")
    for month, counts in reports.outcomes.monthly:
        yield from _counts_rows(counts, month)
    yield _value_row("measures_version", "", reports.outcomes.measures_version)


def _counts_rows(counts: OutcomeCounts, group: str) -> Iterator[Row]:
    yield _count_row("finished_treatment", group, counts.finished)
    yield _rate_row("with_paired_scores", group, counts.with_paired_scores)
    yield _rate_row("at_caseness_at_start", group, counts.caseness_at_start)
    yield _count_row("not_at_caseness_at_start", group, counts.not_at_caseness)
    yield _rate_row("recovery", group, counts.recovery)
    yield _rate_row("reliable_improvement", group, counts.reliable_improvement)
    yield _rate_row("reliable_deterioration", group, counts.reliable_deterioration)
    yield _rate_row("reliable_recovery", group, counts.reliable_recovery)


def _wait_rows(reports: ConnectionReports) -> Iterator[Row]:
    waits = reports.waits
    yield _count_row("referrals", waits.cohort, waits.referrals)
    yield _value_row("median_days", waits.cohort, waits.median_days)
    yield _rate_row("within_6_weeks", waits.cohort, waits.within_six_weeks)
    yield _value_row("standard_6_weeks_met", waits.cohort, waits.six_week_standard_met)
    yield _rate_row("within_18_weeks", waits.cohort, waits.within_eighteen_weeks)
    yield _value_row("standard_18_weeks_met", waits.cohort, waits.eighteen_week_standard_met)
    for weeks, count in waits.by_week():
        yield _count_row("referrals_by_weeks_waited", weeks, count)


def _activity_rows(reports: ConnectionReports) -> Iterator[Row]:
    activity = reports.activity
    yield _count_row("appointments", "", activity.appointments)
    yield _count_row("attended", "", activity.attended)
    yield _rate_row("did_not_attend", "", activity.dna_rate)
    yield _rate_row("outside_office_hours", "", activity.outside_office_share)
    yield _count_row("attended_without_time", "", activity.attended_without_time)
    for hour, count in enumerate(activity.by_hour):
        yield _count_row("attended_by_hour", f"{hour:02d}", count)
    for hour, count in enumerate(activity.by_hour_outside):
        yield _count_row("attended_outside_office_by_hour", f"{hour:02d}", count)
    for day, count in zip(WEEKDAYS, activity.by_weekday, strict=True):
        yield _count_row("attended_by_weekday", day, count)
    yield (
        "sessions_per_finished_episode",
        "",
        activity.finished_treatment_sessions,
        activity.finished_episodes,
        None,
        rounded(activity.sessions_per_finished_episode),
    )


def _governance_rows(reports: ConnectionReports) -> Iterator[Row]:
    governance = reports.governance
    for kind, rows in (("episode", governance.by_episode), ("therapist", governance.by_therapist)):
        for row in rows:
            group = f"{kind}:{row.key}"
            yield _count_row("notes", group, row.notes)
            for name, counts in row.protocols.items():
                yield _count_row(f"{name}/notes", group, counts.notes)
                yield _count_row(f"{name}/notes_with_any", group, counts.notes_with_any)
                for phrase, count in counts.phrases.items():
                    yield _count_row(f"{name}/{phrase}", group, count)
    yield from _risk_rows(reports.risks)


def _risk_rows(report: RiskReport) -> Iterator[Row]:
    """``risks/...`` rows: counts (by level, reason or cause in ``group``), seconds as values."""
    yield _value_row("risks/as_of", "", report.as_of.isoformat(timespec="seconds"))
    yield _value_row("risks/acknowledge_within_minutes", "", report.acknowledge_within_minutes)
    yield _count_row("risks/raised", "", report.raised)
    for level, count in report.by_level:
        yield _count_row("risks/raised_by_level", level, count)
    for reason, count in report.by_reason:
        yield _count_row("risks/raised_by_reason", reason, count)
    yield _count_row("risks/from_quarantine", "", report.from_quarantine)
    yield _count_row("risks/not_written", "", report.not_written_total)
    for cause, count in report.not_written:
        yield _count_row("risks/not_written", cause, count)
    for event, durations in (
        ("delivered", report.delivered),
        ("acknowledged", report.acknowledged),
    ):
        yield _count_row(f"risks/{event}", "", durations.count)
        yield _value_row(f"risks/{event}_median_seconds", "", rounded(durations.median))
        yield _value_row(f"risks/{event}_p90_seconds", "", rounded(durations.p90))
    yield _count_row("risks/resolved", "", report.resolved)
    yield _count_row("risks/open", "", report.open)
    yield _count_row("risks/overdue", "", report.overdue)
    yield _count_row("risks/alerts_sent", "", report.alerts_sent)
