"""Waiting times on the cohort: both cohorts, the 42 and 126 day boundaries, the histogram."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ehr_bridge.reports import Episode, Period, Session, wait_days, waits_report
from ehr_bridge.reports.export import waits_json
from ehr_bridge.reports.waits import weeks_waited


@pytest.mark.parametrize("cohort_name", ["finished", "started"])
def test_cohort_waits_match_the_hand_computed_values(
    cohort_episodes, period, expected, cohort_name
):
    want = expected["waits"][cohort_name]
    report = waits_report(cohort_episodes, period, cohort_name)
    got = waits_json(report)
    assert list(report.days) == want["days"]
    assert got["median_days"] == want["median_days"]
    assert got["within_6_weeks"] == want["within_6_weeks"]
    assert got["within_18_weeks"] == want["within_18_weeks"]
    assert got["standards"]["6_weeks"]["met"] is want["six_week_standard_met"]
    assert got["standards"]["18_weeks"]["met"] is want["eighteen_week_standard_met"]


def test_distribution_by_weeks_waited(cohort_episodes, period, expected):
    got = {
        b["weeks"]: b["referrals"]
        for b in waits_json(waits_report(cohort_episodes, period, "finished"))["by_week"]
        if b["referrals"]
    }
    assert got == expected["waits"]["finished"]["by_week"]


def test_exactly_42_and_126_days_are_within(cohort_episodes):
    by_id = {e.trust_referral_id: e for e in cohort_episodes}
    assert [wait_days(by_id[r]) for r in ("R07", "R08", "R09")] == [42, 126, 127]
    report = waits_report([by_id["R07"], by_id["R08"], by_id["R09"]], Period(), "finished")
    assert report.within_six_weeks.count == 1  # 42 in, 126 and 127 out
    assert report.within_eighteen_weeks.count == 2  # 126 in, 127 out


def test_a_missed_first_appointment_does_not_end_the_wait(cohort_episodes):
    r07 = next(e for e in cohort_episodes if e.trust_referral_id == "R07")
    assert r07.sessions[0].did_not_attend
    assert r07.first_treatment_day == date(2025, 3, 17)


def test_an_assessment_only_session_does_not_end_the_wait(cohort_episodes):
    r10 = next(e for e in cohort_episodes if e.trust_referral_id == "R10")
    assert r10.sessions[0].appointment_type == "01" and r10.sessions[0].attended
    assert wait_days(r10) == 16


def test_the_wait_ends_on_the_uk_calendar_day():
    # 23:30 UTC on 31 March 2025 is 00:30 on 1 April in London (BST)
    late = Session("s", datetime(2025, 3, 31, 23, 30, tzinfo=UTC), "02", "5")
    episode = Episode("id", "R", date(2025, 2, 18), sessions=(late,))
    assert wait_days(episode) == 42


def test_no_treatment_no_wait():
    assert wait_days(Episode("id", "R", date(2025, 1, 1))) is None
    empty = waits_report([], Period(), "finished")
    assert (empty.median_days, empty.six_week_standard_met) == (None, None)


@pytest.mark.parametrize(
    ("days", "week"), [(0, 0), (1, 1), (7, 1), (8, 2), (42, 6), (43, 7), (126, 18), (127, 19)]
)
def test_weeks_are_rounded_up_so_week_six_ends_at_42_days(days, week):
    assert weeks_waited(days) == week
