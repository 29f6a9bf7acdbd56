"""The loader: the cohort stored as real FHIR gives the same figures as the pure path."""

from __future__ import annotations

import base64
import json
import logging

from ehr_bridge.reports import (
    build_reports,
    episode_from_resources,
    load_episodes,
    report_json,
    reports_from_store,
)
from ehr_bridge.reports.export import REPORTS
from ehr_bridge.reports.governance import all_phrases


def test_store_path_equals_pure_path_for_every_report(cohort_store, cohort_episodes, options):
    stored = reports_from_store(cohort_store, "cohort", options)
    direct = build_reports("cohort", cohort_episodes, options)
    for name in REPORTS:
        assert report_json(stored, name) == report_json(direct, name), name


def test_store_path_matches_the_hand_computed_headline(cohort_store, options, expected):
    outcomes = report_json(reports_from_store(cohort_store, "cohort", options), "outcomes")
    assert outcomes["recovery"] == expected["outcomes"]["recovery"]
    assert outcomes["reliable_deterioration"] == expected["outcomes"]["reliable_deterioration"]


def test_loaded_episodes_keep_codes_times_and_counts(cohort_store, protocols):
    episodes = {
        e.trust_referral_id: e
        for e in load_episodes(cohort_store, "cohort", all_phrases(protocols))
    }
    assert len(episodes) == 14
    r07 = episodes["R07"]
    assert [s.attendance for s in r07.sessions] == ["3", "5", "6", "5"]
    assert r07.presenting_problem == "F411" and r07.end_code == "46"
    assert r07.sessions[1].therapist == "Therapist B"
    assert r07.sessions[2].notes == (
        {
            "behavioural activation": 0,
            "activity diary": 0,
            "exposure": 2,
            "worry time": 0,
            "risk reviewed": 0,
        },
    )
    assert {s.measure for s in episodes["R14"].scores} == {"phq9", "gad7", "spin"}
    assert episodes["R12"].sessions == () and episodes["R12"].ended is None


def test_the_model_holds_no_note_text(cohort_store, protocols):
    dumped = repr(list(load_episodes(cohort_store, "cohort", all_phrases(protocols))))
    assert "relapse prevention" not in dumped and "Worry-time" not in dumped


def test_other_connections_are_not_loaded(cohort_store):
    assert list(load_episodes(cohort_store, "someone-else")) == []


def _resources(cohort_store, trust_id):
    row = next(r for r in cohort_store.list_referrals("cohort") if r.trust_referral_id == trust_id)
    return row, cohort_store.resources_for_referral(row.id)


def test_unreadable_resources_are_skipped_and_logged_by_id_only(cohort_store, caplog):
    row, resources = _resources(cohort_store, "R01")
    broken = json.loads(json.dumps(resources))
    note = next(r for r in broken if r["resourceType"] == "DocumentReference")
    note["content"][0]["attachment"]["data"] = base64.b64encode(b"\xff\xfe").decode()
    encounter = next(r for r in broken if r["resourceType"] == "Encounter")
    encounter["period"]["start"] = "not a time"
    with caplog.at_level(logging.WARNING, logger="ehr_bridge.reports.load"):
        episode = episode_from_resources(row.id, row.trust_referral_id, broken, ["activity diary"])
    assert episode is not None and len(episode.sessions) == 2
    assert {(u.resource, u.field) for u in episode.unreadable} == {
        (f"DocumentReference/{note['id']}", "content"),
        (f"Encounter/{encounter['id']}", "period.start"),
    }
    assert {r.getMessage() for r in caplog.records} == {"resource not usable in reports"}
    assert {getattr(r, "resource", None) for r in caplog.records} == {
        f"DocumentReference/{note['id']}",
        f"Encounter/{encounter['id']}",
    }


def test_referral_without_its_service_request_is_skipped(cohort_store):
    row, resources = _resources(cohort_store, "R02")
    without = [r for r in resources if r["resourceType"] != "ServiceRequest"]
    assert episode_from_resources(row.id, row.trust_referral_id, without) is None
