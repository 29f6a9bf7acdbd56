"""Governance phrase counts: the matching rules, the cohort's counts, and counts only."""

from __future__ import annotations

import json
from datetime import date

import pytest

from ehr_bridge.reports import Episode, Protocol, count_phrases, governance_report
from ehr_bridge.reports.export import governance_json


@pytest.mark.parametrize(
    ("text", "phrase", "count"),
    [
        ("Worry time agreed", "worry time", 1),
        ("WORRY TIME agreed", "worry time", 1),
        ("Worry-time kept daily", "worry time", 1),  # punctuation splits words
        ("worry\n  time", "worry time", 1),  # line breaks and runs of spaces too
        ("overexposure to the news", "exposure", 0),  # whole words only
        ("Exposure, exposure hierarchy", "exposure", 2),
        ("the client\u2019s goals", "client's goals", 1),  # typographic apostrophe
        ("worry timetable", "worry time", 0),
        ("", "worry time", 0),
    ],
)
def test_phrase_matching(text, phrase, count):
    assert count_phrases(text, [phrase]) == {phrase: count}


def test_every_phrase_is_reported_even_at_zero():
    assert count_phrases("nothing here", ["a b", "c"]) == {"a b": 0, "c": 0}


def _by_key(rows, key):
    return {row.pop(key): row for row in rows}


def test_cohort_counts_per_episode(cohort_episodes, period, protocols, expected):
    got = governance_json(governance_report(cohort_episodes, period, protocols))
    assert _by_key(got["by_episode"], "referral") == expected["governance"]["by_episode"]


def test_cohort_counts_per_therapist(cohort_episodes, period, protocols, expected):
    got = governance_json(governance_report(cohort_episodes, period, protocols))
    assert _by_key(got["by_therapist"], "therapist") == expected["governance"]["by_therapist"]


def test_output_carries_no_note_text(cohort, cohort_episodes, period, protocols):
    dumped = json.dumps(governance_json(governance_report(cohort_episodes, period, protocols)))
    notes = [s["note"] for e in cohort["episodes"] for s in e["sessions"] if "note" in s]
    for note in notes:
        for sentence in note.split(". "):
            assert sentence.strip(". ") not in dumped
    assert "relapse" not in dumped and "feared" not in dumped


def test_protocol_limited_by_presenting_problem(cohort_episodes, period, protocols):
    report = governance_report(cohort_episodes, period, protocols)
    r03 = next(r for r in report.by_episode if r.key == "R03")  # depression: "exposure" ignored
    assert set(r03.protocols) == {"depression", "risk"}
    r09 = next(r for r in report.by_episode if r.key == "R09")  # PTSD: only the general list
    assert set(r09.protocols) == {"risk"}


def test_problem_prefixes_may_be_written_with_dots():
    gad = Episode("id", "R", date(2025, 1, 1), presenting_problem="F41.1")
    assert Protocol("anxiety", ("exposure",), ("F41.1",)).applies_to(gad)
    assert Protocol("anxiety", ("exposure",), ("f411",)).applies_to(gad)
    assert not Protocol("depression", ("x",), ("F32",)).applies_to(gad)
    assert not Protocol("depression", ("x",), ("F32",)).applies_to(
        Episode("id", "R", date(2025, 1, 1))
    )
