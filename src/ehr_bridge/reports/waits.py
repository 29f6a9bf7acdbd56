"""Waiting times: referral received to first attended treatment session.

A wait is counted in whole days between the trust's received date and the local day of the
first attended treatment session (AttendOrDNACode 5/6, AppType 02/03/05). The standards are
75% within 6 weeks and 95% within 18 weeks; a wait of exactly 42 (or 126) days is *within*
the standard, as NHS England's own queries count it (``DATEDIFF(dd, received, first) <= 42``).

Two cohorts: ``finished`` (referrals that finished a course of treatment with an end date in
the period: the national key-metric cohort, complete pathways only) and ``started``
(first attended treatment session in the period: a timelier view of today's waits).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ehr_bridge.reports.model import Episode, Period, Rate

Cohort = Literal["finished", "started"]
COHORTS: tuple[Cohort, ...] = ("finished", "started")
#: (days, share that must be within) for the 6-week and 18-week standards
SIX_WEEKS = 42
EIGHTEEN_WEEKS = 126
SIX_WEEK_STANDARD = 0.75
EIGHTEEN_WEEK_STANDARD = 0.95


def wait_days(episode: Episode) -> int | None:
    """Days from received to the first attended treatment session; None if never treated."""
    first = episode.first_treatment_day
    return None if first is None else (first - episode.received).days


def in_cohort(episode: Episode, cohort: Cohort, period: Period) -> bool:
    """Whether the referral's wait belongs to this cohort and period."""
    if cohort == "finished":
        return episode.finished_treatment and episode.ended in period
    return episode.first_treatment_day in period


def weeks_waited(days: int) -> int:
    """Whole weeks rounded up (1-7 days is week 1), so week 6 ends exactly at 42 days."""
    return max(0, -(-days // 7))


@dataclass(frozen=True)
class WaitsReport:
    """The waits of one cohort, with the two standards."""

    period: Period
    cohort: Cohort
    days: tuple[int, ...]

    @property
    def referrals(self) -> int:
        """Referrals in the cohort."""
        return len(self.days)

    @property
    def median_days(self) -> float | None:
        """Median wait in days (a half day when the middle falls between two)."""
        return statistics.median(self.days) if self.days else None

    @property
    def within_six_weeks(self) -> Rate:
        """Waits of 42 days or fewer."""
        return Rate(sum(d <= SIX_WEEKS for d in self.days), len(self.days))

    @property
    def within_eighteen_weeks(self) -> Rate:
        """Waits of 126 days or fewer."""
        return Rate(sum(d <= EIGHTEEN_WEEKS for d in self.days), len(self.days))

    @property
    def six_week_standard_met(self) -> bool | None:
        """At least 75% within 6 weeks; None without any wait."""
        value = self.within_six_weeks.value
        return None if value is None else value >= SIX_WEEK_STANDARD

    @property
    def eighteen_week_standard_met(self) -> bool | None:
        """At least 95% within 18 weeks; None without any wait."""
        value = self.within_eighteen_weeks.value
        return None if value is None else value >= EIGHTEEN_WEEK_STANDARD

    def by_week(self) -> list[tuple[str, int]]:
        """Distribution by weeks waited: ``0`` .. ``18`` then ``19+``, for the chart and CSV."""
        counts = [0] * 20
        for days in self.days:
            counts[min(weeks_waited(days), 19)] += 1
        return [(str(w) if w < 19 else "19+", n) for w, n in enumerate(counts)]


def waits_report(episodes: Iterable[Episode], period: Period, cohort: Cohort) -> WaitsReport:
    """The waits of every referral in ``cohort`` for ``period``, sorted."""
    days = []
    for episode in episodes:
        wait = wait_days(episode)
        if wait is not None and in_cohort(episode, cohort, period):
            days.append(wait)
    return WaitsReport(period=period, cohort=cohort, days=tuple(sorted(days)))
