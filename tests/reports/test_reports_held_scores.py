"""Reports never count a score that collect holds waiting for its items.

A total whose QuestionnaireResponse has not arrived is stored but unchecked (collect holds
its write-back, ``store.held_scores``). Through the real collect flow on the IAPTUS-style
trust (``support.trusts``), a finished referral whose last PHQ-9 is held is reported on its
checked scores only, the data-quality block counts the held score, and once the items
arrive and agree the score counts like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.domain.session import build_episode_end, session_bundle
from ehr_bridge.reports import ReportOptions, episode_from_resources, report_json
from ehr_bridge.reports.build import reports_from_store
from ehr_bridge.reports.export import csv_rows
from support.trusts import HarnessReferral, TrustHarness, score_bundle, trust_harness

JsonDict = dict[str, Any]

PHQ9_HIGH = (3, 3, 2, 2, 2, 2, 2, 1, 1)  # 18: at caseness
PHQ9_MID = (2, 2, 1, 1, 1, 2, 1, 1, 1)  # 12: still at caseness, a reliable fall of 6
PHQ9_LOW = (1, 0, 1, 0, 1, 0, 1, 0, 0)  # 4: below caseness
GAD7_HIGH = (2, 2, 2, 2, 2, 2, 2)  # 14
GAD7_LOW = (1, 1, 0, 1, 0, 1, 0)  # 4


def _session(referral: HarnessReferral, number: int, **measures: tuple[int, ...]) -> JsonDict:
    """One session bundle carrying a total (with its items) of each measure given."""
    resources: dict[str, JsonDict] = {}
    for measure, items in measures.items():
        bundle = score_bundle(referral, measure, items, number=number)
        for entry in bundle["entry"]:
            resources.setdefault(entry["resource"]["id"], entry["resource"])
    return session_bundle(f"held-{referral.service_request_id}-{number}", list(resources.values()))


def _without_items(bundle: JsonDict, measure_items: int) -> tuple[JsonDict, JsonDict]:
    """The bundle minus the response with ``measure_items`` answers, and that response alone."""
    resources = [e["resource"] for e in bundle["entry"]]
    response = next(
        r
        for r in resources
        if r["resourceType"] == "QuestionnaireResponse" and len(r["item"]) == measure_items
    )
    rest = [r for r in resources if r is not response]
    return session_bundle(f"{bundle['id']}-s", rest), session_bundle(
        f"{bundle['id']}-i", [response]
    )


def _ended(referral: HarnessReferral) -> JsonDict:
    episode = build_episode_end(
        episode_id=f"held-end-{referral.service_request_id}",
        patient_id=referral.patient_id,
        service_request_id=referral.service_request_id,
        start=date(2026, 10, 8),
        end=date(2026, 11, 30),
        end_code="46",
    )
    return session_bundle(f"held-end-{referral.service_request_id}", [episode])


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[TrustHarness]:
    with trust_harness("iaptus", tmp_path, referrals=1) as running:
        yield running


def _outcomes(harness: TrustHarness) -> tuple[JsonDict, JsonDict]:
    reports = reports_from_store(harness.store, harness.conn.name, ReportOptions())
    body = report_json(reports, "outcomes")
    return body, body["data_quality"]


def test_a_held_last_score_is_left_out_until_its_items_arrive_and_pass(
    harness: TrustHarness,
) -> None:
    (referral,) = harness.referrals
    harness.submit(_session(referral, 1, phq9=PHQ9_HIGH, gad7=GAD7_HIGH))
    harness.submit(_session(referral, 2, phq9=PHQ9_MID, gad7=GAD7_LOW))
    session, items = _without_items(_session(referral, 3, phq9=PHQ9_LOW, gad7=GAD7_LOW), 9)
    harness.submit(session)
    harness.submit(_ended(referral))
    harness.sync()
    assert harness.store.held_summary(harness.conn.name).count == 1

    total, quality = _outcomes(harness)
    # PHQ-9 18 -> 12 on the checked scores: a reliable improvement, not a recovery
    assert (total["finished_treatment"], total["with_paired_scores"]["count"]) == (1, 1)
    assert total["recovery"]["count"] == 0
    assert total["reliable_improvement"]["count"] == 1
    assert quality["scores_awaiting_items"] == 1
    assert quality["unreadable"] == []

    harness.submit(items)
    harness.sync()
    assert harness.store.held_summary(harness.conn.name).count == 0

    total, quality = _outcomes(harness)
    # the released PHQ-9 of 4 is now the last score: 18 -> 4 and GAD-7 14 -> 4, recovered
    assert (total["recovery"]["count"], total["recovery"]["denominator"]) == (1, 1)
    assert total["reliable_recovery"]["count"] == 1
    assert quality["scores_awaiting_items"] == 0
    assert harness.quarantined() == []


def test_the_held_count_is_in_every_output_and_names_nothing(harness: TrustHarness) -> None:
    (referral,) = harness.referrals
    session, _ = _without_items(_session(referral, 9, phq9=PHQ9_HIGH), 9)
    harness.submit(session)
    harness.sync()
    reports = reports_from_store(harness.store, harness.conn.name, ReportOptions())

    assert reports.data_quality.scores_awaiting_items == 1
    assert not reports.data_quality.clean
    rows = [r for r in csv_rows(reports, "waits") if r[2] == "data_quality/scores_awaiting_items"]
    metric = "data_quality/scores_awaiting_items"
    assert rows == [(harness.conn.name, "waits", metric, "", 1, None, None, None)]
    (hold,) = harness.store.held_scores(harness.conn.name)
    shown = repr(report_json(reports, "outcomes"))
    assert hold.observation_id not in shown and referral.patient_id not in shown


def test_a_held_observation_is_counted_not_scored_when_building_an_episode() -> None:
    referral = HarnessReferral("sr-1", "pt-1", "T-1")
    resources = [e["resource"] for e in _session(referral, 1, phq9=PHQ9_HIGH)["entry"]]
    request = {"resourceType": "ServiceRequest", "id": "sr-1", "authoredOn": "2026-09-01"}
    observation = next(r for r in resources if r["resourceType"] == "Observation")

    free = episode_from_resources("sr-1", "T-1", [request, *resources])
    held = episode_from_resources("sr-1", "T-1", [request, *resources], held={observation["id"]})

    assert free is not None and held is not None
    assert [s.value for s in free.scores] == [18] and free.awaiting_items == 0
    assert held.scores == () and held.awaiting_items == 1
