"""Outcomes on the hand-computed cohort, and the national rules one edge at a time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from ehr_bridge.domain.measures import MEASURES, MEASURES_VERSION, measure_table
from ehr_bridge.reports import Episode, Period, Score, Session, episode_outcome, outcomes_report
from ehr_bridge.reports.export import counts_json, outcomes_json
from ehr_bridge.reports.outcomes import anxiety_measure, months_between, pair_of


def _report(episodes, period, adsm=False):
    return outcomes_report(
        episodes,
        period,
        measure_table(adsm_enabled=adsm),
        measures_version=MEASURES_VERSION,
        adsm_enabled=adsm,
    )


def _headline(expected_block):
    return {k: v for k, v in expected_block.items() if k != "monthly_recovery"}


def test_cohort_outcomes_match_the_hand_computed_values(cohort_episodes, period, expected):
    got = counts_json(_report(cohort_episodes, period).total)
    assert got == _headline(expected["outcomes"])


def test_cohort_outcomes_with_adsms_switched_on(cohort_episodes, period, expected):
    # R14 (social phobia, SPIN 40 -> 25) becomes a case who reliably improved but did not
    # recover; the referrals whose ADSM has no scores (R08 panic, R09 PTSD) keep GAD-7.
    got = counts_json(_report(cohort_episodes, period, adsm=True).total)
    assert got == expected["outcomes_with_adsm"]


def test_recovery_by_month_of_end(cohort_episodes, period, expected):
    report = outcomes_json(_report(cohort_episodes, period))
    got = {
        m["month"]: {"finished": m["finished_treatment"], **m["recovery"]}
        for m in report["monthly"]
    }
    assert got == expected["outcomes"]["monthly_recovery"]


def test_per_episode_flags(cohort_episodes, expected):
    table = measure_table()
    by_id = {e.trust_referral_id: e for e in cohort_episodes}
    for referral, flags in expected["episode_flags"].items():
        outcome = episode_outcome(by_id[referral], table)
        got = {
            "finished": outcome.finished,
            "paired": outcome.paired,
            "at_caseness": outcome.at_caseness,
            "recovered": outcome.recovered,
            "improved": outcome.improved,
            "deteriorated": outcome.deteriorated,
        }
        assert got == flags, referral


def test_an_episode_ending_after_the_period_is_not_counted(cohort_episodes, period):
    # R11 ends 2025-07-10: widen the period and it joins the finished (and recovers).
    wider = Period(period.first, date(2025, 7, 31))
    before, after = _report(cohort_episodes, period).total, _report(cohort_episodes, wider).total
    assert (after.finished, after.recovered) == (before.finished + 1, before.recovered + 1)


def test_open_period_covers_every_month_with_an_end(cohort_episodes):
    report = _report(cohort_episodes, Period())
    assert [m for m, _ in report.monthly] == months_between(date(2025, 2, 1), date(2025, 7, 1))
    assert report.total.finished == 11


# --- the rules, one referral at a time -----------------------------------------------------

T0 = datetime(2025, 3, 3, 18, 0, tzinfo=UTC)


def _episode(phq, gad, *, attended=2, problem="F411", extra=()):
    """A finished referral with the given PHQ-9 and GAD-7 series, one score per session."""
    sessions = tuple(
        Session(f"s{i}", T0 + timedelta(days=7 * i), "02", "5") for i in range(attended)
    )
    scores = [Score("phq9", v, T0 + timedelta(days=7 * i)) for i, v in enumerate(phq)]
    scores += [Score("gad7", v, T0 + timedelta(days=7 * i)) for i, v in enumerate(gad)]
    return Episode(
        "id",
        "R",
        date(2025, 2, 1),
        problem,
        sessions,
        tuple(scores) + tuple(extra),
        ended=date(2025, 4, 1),
    )


@pytest.mark.parametrize(
    ("phq", "gad", "recovered", "improved", "deteriorated"),
    [
        ((10, 9), (7, 7), True, False, False),  # PHQ exactly at caseness counts as a case
        ((9, 9), (8, 7), True, False, False),  # GAD-7 caseness is 8, not the generic 10
        ((9, 9), (7, 7), False, False, False),  # not a case: cannot recover
        ((16, 10), (12, 12), False, True, False),  # PHQ -6 is exactly reliable
        ((16, 11), (12, 12), False, False, False),  # PHQ -5 is not
        ((16, 4), (12, 16), False, False, True),  # better on one, reliably worse on the other
        ((12, 12), (9, 12), False, False, False),  # GAD +3 is not reliable
        ((12, 12), (9, 13), False, False, True),  # GAD +4 is
    ],
)
def test_thresholds(phq, gad, recovered, improved, deteriorated):
    outcome = episode_outcome(_episode(phq, gad), MEASURES)
    assert (outcome.recovered, outcome.improved, outcome.deteriorated) == (
        recovered,
        improved,
        deteriorated,
    )


def test_first_and_last_are_by_completion_time_not_by_list_order():
    episode = _episode((15,), (10,))
    late = Score("phq9", 5, T0 + timedelta(days=30))
    early = Score("phq9", 20, T0 - timedelta(days=1))
    shuffled = Episode(
        "id", "R", episode.received, "F411", episode.sessions, (late, *episode.scores, early)
    )
    pair = pair_of(shuffled, MEASURES["phq9"])
    assert pair is not None and (pair.first, pair.last, pair.change) == (20, 5, -15)


def test_a_pair_on_one_measure_only_gives_no_outcome():
    outcome = episode_outcome(_episode((20, 5), (12,)), MEASURES)
    assert outcome.finished and not outcome.paired
    assert not (outcome.at_caseness or outcome.not_at_caseness or outcome.recovered)


def test_one_attended_treatment_session_is_not_a_finished_course():
    assert not _episode((20, 5), (12, 3), attended=1).finished_treatment


def test_wsas_never_enters_recovery():
    wsas = (Score("wsas", 10, T0), Score("wsas", 40, T0 + timedelta(days=7)))
    outcome = episode_outcome(_episode((12, 12), (9, 9), extra=wsas), MEASURES)
    assert not outcome.deteriorated


def test_adsm_replaces_gad7_only_when_switched_on_matching_and_paired():
    spin = (Score("spin", 40, T0), Score("spin", 20, T0 + timedelta(days=7)))
    social = _episode((8, 8), (6, 6), problem="F401", extra=spin)
    assert anxiety_measure(social, MEASURES).key == "gad7"
    assert anxiety_measure(social, measure_table(adsm_enabled=True)).key == "spin"
    other_problem = _episode((8, 8), (6, 6), problem="F411", extra=spin)
    assert anxiety_measure(other_problem, measure_table(adsm_enabled=True)).key == "gad7"
    unpaired = _episode((8, 8), (6, 6), problem="F40.1", extra=spin[:1])
    assert anxiety_measure(unpaired, measure_table(adsm_enabled=True)).key == "gad7"


def test_zero_denominators_are_not_rates():
    report = _report([], Period(date(2025, 1, 1), date(2025, 1, 31)))
    assert report.total.recovery.value is None
    assert report.total.recovery.percent() == "0 of 0 (n/a)"
