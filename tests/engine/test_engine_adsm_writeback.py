"""ADSM scores reach every kind of trust under the trust's own code, or are quarantined.

A panic referral (F41.0) with PDSS scores and an agoraphobia referral (F40.0) with
Mobility Inventory scores (a mean, so a decimal total) go through the real collect and
push flows to the IAPTUS-style, PC-MIS-style, HL7 v2 and FHIR trusts; what each trust
simulator itself filed is checked. With ``[reports] adsm_enabled = false`` (the default)
the same bundles are quarantined as ``measure_disabled`` and nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ehr_bridge.domain.codes import OUTCOME_MEASURE_SYSTEM
from ehr_bridge.domain.ids import resource_id
from ehr_bridge.domain.session import build_encounter, build_score, session_bundle
from support.trusts import KINDS, HarnessReferral, TrustHarness, TrustKind, trust_harness

JsonDict = dict[str, Any]
ADSM_ON = "[reports]\nadsm_enabled = true\n"
ADSM_OFF = "[reports]\nadsm_enabled = false\n"
_LONDON = ZoneInfo("Europe/London")

PDSS_ITEMS = (2, 3, 1, 2, 2, 1, 3)  # 14
#: 27 "when alone" ratings, two skipped: the mean of 25 answered (58 / 25 = 2.32)
MI_ITEMS = (3, 2, 2, 3, 2, 2, 3, 2, 2, 3, 2, 2, 3, None, 2, 2, 3, 2, 2, 3, 2, None, 2, 3, 2, 2, 2)

#: what each trust files an ADSM under: the shipped mappings' local codes, as the trust
#: simulators know them (no SNOMED CT concept is confirmed for any ADSM)
TRUST_CODES: dict[TrustKind, dict[str, str]] = {
    "iaptus": {"pdss": "LOCAL-PDSS", "mi": "LOCAL-MI-ALONE"},
    "pcmis": {"pdss": "PDSS", "mi": "MI_ALONE"},
    "hl7v2": {"pdss": "LOCAL-PDSS", "mi": "LOCAL-MI-ALONE"},
}
CASES = [("F410", "pdss", PDSS_ITEMS, 14), ("F400", "mi", MI_ITEMS, 2.32)]
CASE_IDS = ["panic-pdss", "agoraphobia-mi"]


def adsm_bundle(
    referral: HarnessReferral, measure: str, items: Sequence[int | None], number: int = 1
) -> JsonDict:
    """A provider session bundle with one ADSM total and its items (a platform in ADSM mode)."""
    key = f"{referral.service_request_id}|adsm{number:02d}|{measure}"
    begin = datetime(2026, 10, 5, 18, 0, tzinfo=_LONDON) + timedelta(days=7 * number)
    encounter_id = _rid("Encounter", key)
    encounter = build_encounter(
        encounter_id=encounter_id,
        patient_id=referral.patient_id,
        service_request_id=referral.service_request_id,
        start=begin,
        end=begin + timedelta(minutes=50),
    )
    response, observation = build_score(
        observation_id=_rid("Observation", key),
        response_id=_rid("QuestionnaireResponse", key),
        patient_id=referral.patient_id,
        service_request_id=referral.service_request_id,
        encounter_id=encounter_id,
        measure_key=measure,
        items=items,
        effective=begin + timedelta(minutes=40),
        adsm_enabled=True,
    )
    return session_bundle(_rid("Bundle", key), [encounter, response, observation])


def _rid(kind: str, key: str) -> str:
    return resource_id(connection="adsm-platform", kind=kind, key=key)


def _filed_as(kind: TrustKind, score: JsonDict) -> object:
    """The code the trust filed a score under (FHIR: every coding it kept)."""
    if kind == "fhir":
        return score["codings"]
    if kind == "hl7v2":
        return (score["tool_code"], score["tool_system"])
    return score["tool_code"]


def _expected_code(kind: TrustKind, measure: str) -> object:
    if kind == "fhir":  # the agreed ehr-bridge outcome-measure code, nothing national
        return [(OUTCOME_MEASURE_SYSTEM, measure)]
    if kind == "hl7v2":
        return (TRUST_CODES[kind][measure], "L")  # HL7 table 0396: local coding system
    return TRUST_CODES[kind][measure]


def _settled(harness: TrustHarness) -> None:
    assert harness.quarantined() == []
    assert harness.dead_errors() == {}
    assert set(harness.outbox_states().values()) == {"done"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("problem", "measure", "items", "total"), CASES, ids=CASE_IDS)
def test_adsm_scores_reach_the_trust_under_its_own_code(
    kind: TrustKind,
    problem: str,
    measure: str,
    items: Sequence[int | None],
    total: float,
    tmp_path: Path,
) -> None:
    with trust_harness(
        kind, tmp_path, referrals=1, referral_problem=problem, extra_config=ADSM_ON
    ) as harness:
        assert harness.conn.adsm_enabled
        (referral,) = harness.referrals
        harness.submit(adsm_bundle(referral, measure, items, number=1))
        harness.submit(adsm_bundle(referral, measure, items[::-1], number=2))
        harness.sync()

        scores = harness.trust_scores()
        _settled(harness)
    assert [_filed_as(kind, s) for s in scores] == [_expected_code(kind, measure)] * 2
    assert sorted(float(s["score"]) for s in scores) == [total, total]


@pytest.mark.parametrize("kind", KINDS)
def test_adsm_scores_are_quarantined_and_never_written_when_adsms_are_off(
    kind: TrustKind, tmp_path: Path
) -> None:
    with trust_harness(kind, tmp_path, referrals=2, extra_config=ADSM_OFF) as harness:
        assert not harness.conn.adsm_enabled
        panic, agoraphobia = harness.referrals
        harness.submit(adsm_bundle(panic, "pdss", PDSS_ITEMS))
        harness.submit(adsm_bundle(agoraphobia, "mi", MI_ITEMS))
        harness.sync()

        quarantined = harness.quarantined()
        assert harness.trust_scores() == []
        assert harness.trust_contacts() == []
        queued = {r.kind for r in harness.store.outbox_rows(connection=harness.conn.name)}
    assert not queued & {"assessment", "care_contact"}  # the bundle is held whole
    # the item set (entry 1) is the first to name the measure
    assert [(q.code, q.field) for q in quarantined] == [
        ("measure_disabled", "entry[1].resource.questionnaire")
    ] * 2
