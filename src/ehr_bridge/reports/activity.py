"""Activity: when sessions happen, how many are missed, how long courses are.

A commissioner buys online therapy partly for capacity outside office hours, so attended
sessions are counted by local hour of day and weekday, and the share that starts outside
09:00-17:00 Monday to Friday is reported (a start at 17:00 is outside, 09:00 is inside;
bank holidays are not known here and count as weekdays). The did-not-attend rate is DNAs
(AttendOrDNACode 3) over every appointment with an attendance code in the period, and
sessions per finished episode is the mean number of attended treatment sessions of the
referrals that finished a course of treatment in the period.

A session stored with a date but no time of day counts as an appointment, in its weekday
and in course length, but not in the hour figures or the office-hours share, whose
denominator is the attended sessions with a time (``attended_without_time`` says how many
were left out).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from ehr_bridge.reports.model import Episode, Period, Rate, attendance_code

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass
class ActivityReport:
    """Session counts for the period (attended sessions unless the name says otherwise)."""

    period: Period
    appointments: int = 0
    attended: int = 0
    did_not_attend: int = 0
    outside_office_hours: int = 0
    by_hour: list[int] = field(default_factory=lambda: [0] * 24)
    #: of ``by_hour``, the sessions outside office hours (evenings, early mornings, weekends)
    by_hour_outside: list[int] = field(default_factory=lambda: [0] * 24)
    by_weekday: list[int] = field(default_factory=lambda: [0] * 7)
    finished_episodes: int = 0
    finished_treatment_sessions: int = 0
    #: attended sessions whose start has no time of day (not in the hour figures)
    attended_without_time: int = 0

    @property
    def dna_rate(self) -> Rate:
        """Did-not-attend over all appointments."""
        return Rate(self.did_not_attend, self.appointments)

    @property
    def outside_office_share(self) -> Rate:
        """Attended sessions starting outside 09:00-17:00 Monday-Friday (of those with a time)."""
        return Rate(self.outside_office_hours, self.attended - self.attended_without_time)

    @property
    def sessions_per_finished_episode(self) -> float | None:
        """Mean attended treatment sessions per finished course; None without any."""
        if not self.finished_episodes:
            return None
        return self.finished_treatment_sessions / self.finished_episodes


def activity_report(episodes: Iterable[Episode], period: Period) -> ActivityReport:
    """Tally sessions whose local day is in ``period`` and courses that ended in it."""
    report = ActivityReport(period=period)
    for episode in episodes:
        for session in episode.sessions:
            if session.day in period:
                if attendance_code(session.attendance) is not None:
                    _count_session(report, session.attended, session.did_not_attend)
                if session.attended and session.has_time:
                    _count_when(report, session.local_start, not session.in_office_hours)
                elif session.attended:
                    _count_day_only(report, session.local_start)
        if episode.finished_treatment and episode.ended in period:
            report.finished_episodes += 1
            report.finished_treatment_sessions += len(episode.attended_treatment_sessions)
    return report


def _count_session(report: ActivityReport, attended: bool, missed: bool) -> None:
    """One appointment, attended or missed (or neither: cancelled)."""
    report.appointments += 1
    report.attended += attended
    report.did_not_attend += missed


def _count_day_only(report: ActivityReport, local_start: datetime) -> None:
    """One attended session known only by its day: its weekday, no hour."""
    report.attended_without_time += 1
    report.by_weekday[local_start.weekday()] += 1


def _count_when(report: ActivityReport, local_start: datetime, outside: bool) -> None:
    """One attended session in the hour, weekday and out-of-hours tallies."""
    report.by_hour[local_start.hour] += 1
    report.by_weekday[local_start.weekday()] += 1
    report.outside_office_hours += outside
    report.by_hour_outside[local_start.hour] += outside
