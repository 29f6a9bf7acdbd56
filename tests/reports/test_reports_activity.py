"""Activity on the cohort: hours and weekdays in UK time, office hours, DNAs, course length."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from ehr_bridge.reports import Episode, Period, Session, activity_report
from ehr_bridge.reports.export import activity_json

LONDON = ZoneInfo("Europe/London")


def test_cohort_activity_matches_the_hand_computed_values(cohort_episodes, period, expected):
    got = activity_json(activity_report(cohort_episodes, period))
    want = expected["activity"]
    for key in ("by_hour", "by_hour_outside_office"):
        assert {h: n for h, n in got[key].items() if n} == want[key], key
    assert got["by_weekday"] == want["by_weekday"]
    for key in (
        "appointments",
        "attended",
        "did_not_attend",
        "outside_office_hours",
        "finished_episodes",
        "attended_treatment_sessions",
        "sessions_per_finished_episode",
    ):
        assert got[key] == want[key], key


@pytest.mark.parametrize(
    ("start", "inside"),
    [
        (datetime(2025, 3, 3, 9, 0, tzinfo=LONDON), True),  # Monday 09:00 opens
        (datetime(2025, 3, 3, 8, 59, tzinfo=LONDON), False),
        (datetime(2025, 3, 3, 16, 59, tzinfo=LONDON), True),
        (datetime(2025, 3, 3, 17, 0, tzinfo=LONDON), False),  # 17:00 is closed
        (datetime(2025, 3, 8, 11, 0, tzinfo=LONDON), False),  # Saturday
        (datetime(2025, 6, 2, 16, 30, tzinfo=UTC), False),  # 17:30 BST
        (datetime(2025, 1, 6, 16, 30, tzinfo=UTC), True),  # 16:30 GMT
    ],
)
def test_office_hours_are_judged_in_uk_time(start, inside):
    assert Session("s", start, "02", "5").in_office_hours is inside


def test_hour_of_a_utc_stamped_session_is_its_london_hour(cohort_episodes):
    r11 = next(e for e in cohort_episodes if e.trust_referral_id == "R11")
    assert r11.sessions[0].start.utcoffset().total_seconds() == 0
    assert r11.sessions[0].local_start.hour == 17


def test_zero_padded_codes_are_the_same_codes():
    session = Session("s", datetime(2025, 3, 3, 18, tzinfo=LONDON), "2", "05")
    assert session.attended and session.treatment
    missed = Session("s", datetime(2025, 3, 3, 18, tzinfo=LONDON), "02", "03")
    assert missed.did_not_attend and not missed.attended


def test_cancelled_and_uncoded_sessions():
    cancelled = Session("a", datetime(2025, 3, 3, 18, tzinfo=LONDON), "02", "2")
    uncoded = Session("b", datetime(2025, 3, 4, 18, tzinfo=LONDON), "02", None)
    report = activity_report(
        [Episode("id", "R", date(2025, 2, 1), sessions=(cancelled, uncoded))], Period()
    )
    assert (report.appointments, report.attended, report.did_not_attend) == (1, 0, 0)
    assert report.sessions_per_finished_episode is None
