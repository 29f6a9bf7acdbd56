"""Scores coded the national way reach every kind of trust correctly coded (issue 13, item 4).

Through the real collect and push flows (``support.trusts``): a provider that codes a total
only by SNOMED CT and/or LOINC (no ehr-bridge coding) still gets it written, under the code
each trust's mapping asks for, and the trust's own record is what is checked. A FHIR trust
always gets SNOMED CT + the LOINC total code and never a panel code; an HL7 trust gets the
patient's NHS number and its own identifier in PID-3.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from support.trusts import (
    GAD7_ITEMS,
    KINDS,
    LOINC,
    PHQ9_ITEMS,
    SNOMED,
    TrustHarness,
    TrustKind,
    national_coding,
    score_bundle,
    trust_harness,
)

#: the tool code each simulated trust files a measure under (its mapping's code maps)
TOOL_CODES: dict[TrustKind, dict[str, str]] = {
    "iaptus": {"phq9": "720433000", "gad7": "445455005"},
    "pcmis": {"phq9": "PHQ9", "gad7": "GAD7"},
    "hl7v2": {"phq9": "720433000", "gad7": "445455005"},
    "fhir": {"phq9": "720433000", "gad7": "445455005"},
}
NATIONAL = {
    "phq9": {(SNOMED, "720433000"), (LOINC, "44261-6")},
    "gad7": {(SNOMED, "445455005"), (LOINC, "70274-6")},
}
PANEL_CODES = {"44249-1", "69737-5"}
TAKEN = datetime(2026, 10, 8, 17, 45, tzinfo=UTC)


def _one_score(harness: TrustHarness) -> dict[str, Any]:
    scores = harness.trust_scores()
    assert len(scores) == 1, (scores, harness.dead_errors(), harness.quarantined())
    return scores[0]


def _assert_filed(kind: TrustKind, score: dict[str, Any], measure: str, total: int) -> None:
    """The trust holds the total under its code for the measure, at the time it was taken."""
    assert score["tool_code"] == TOOL_CODES[kind][measure]
    assert score["score"] == total
    when = score["completed_at"]  # the bundle's: 18:45 London (BST) on 8 October
    if isinstance(when, datetime):
        assert when == TAKEN
    else:  # a trust that keeps the day only
        assert when == TAKEN.astimezone(ZoneInfo("Europe/London")).date()
    if kind == "fhir":
        codings = set(score["codings"])
        assert NATIONAL[measure] <= codings
        assert not {code for _, code in codings} & PANEL_CODES


@pytest.mark.parametrize("kind", KINDS)
def test_a_phq9_coded_only_the_national_way_is_filed_under_the_trusts_code(
    kind: TrustKind, tmp_path: Path
) -> None:
    with trust_harness(kind, tmp_path) as trust:
        coding = national_coding(snomed="720433000", loinc="44261-6")
        trust.submit(score_bundle(trust.referrals[0], "phq9", PHQ9_ITEMS, coding=coding))
        trust.sync()
        assert not trust.dead_errors()
        _assert_filed(kind, _one_score(trust), "phq9", 11)


@pytest.mark.parametrize("kind", KINDS)
def test_a_gad7_coded_by_its_loinc_total_code_alone_is_filed(
    kind: TrustKind, tmp_path: Path
) -> None:
    with trust_harness(kind, tmp_path) as trust:
        coding = national_coding(loinc="70274-6")
        trust.submit(score_bundle(trust.referrals[0], "gad7", GAD7_ITEMS, coding=coding))
        trust.sync()
        _assert_filed(kind, _one_score(trust), "gad7", 9)


WSAS_CODES: dict[TrustKind, str | None] = {
    "iaptus": "LOCAL-WSAS",
    "pcmis": "WSAS",
    "hl7v2": "LOCAL-WSAS",
    "fhir": None,  # no national code: the FHIR trust knows it by the agreed local coding
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_pro_rated_wsas_reaches_every_trust_under_its_local_code(
    kind: TrustKind, tmp_path: Path
) -> None:
    """One item unanswered: the missing item is the mean of the others (NHS Data Dictionary)."""
    with trust_harness(kind, tmp_path) as trust:
        trust.submit(score_bundle(trust.referrals[0], "wsas", (5, 6, None, 7, 8)))
        trust.sync()
        score = _one_score(trust)
        assert (score["tool_code"], score["score"]) == (WSAS_CODES[kind], 32.5)


def test_a_snomed_only_phq9_reaches_a_fhir_trust_with_its_loinc_total_code(
    tmp_path: Path,
) -> None:
    with trust_harness("fhir", tmp_path) as trust:
        coding = [{"system": SNOMED, "code": "720433000", "display": "provider's own words"}]
        trust.submit(score_bundle(trust.referrals[0], "phq9", PHQ9_ITEMS, coding=coding))
        trust.sync()
        code = _one_score(trust)["raw"]["code"]
        assert [(c["system"], c["code"]) for c in code["coding"][:2]] == [
            (SNOMED, "720433000"),
            (LOINC, "44261-6"),
        ]
        assert "provider's own words" not in json.dumps(code)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "coding",
    [
        [{"system": LOINC, "code": "44249-1"}],
        [{"system": LOINC, "code": "44249-1"}, {"system": LOINC, "code": "44261-6"}],
        [{"system": SNOMED, "code": "720433000"}, {"system": LOINC, "code": "44249-1"}],
    ],
    ids=["panel-only", "panel-and-total", "snomed-and-panel"],
)
def test_a_total_carrying_a_panel_code_never_reaches_the_trust(
    kind: TrustKind, coding: list[dict[str, str]], tmp_path: Path
) -> None:
    with trust_harness(kind, tmp_path) as trust:
        trust.submit(score_bundle(trust.referrals[0], "phq9", PHQ9_ITEMS, coding=coding))
        trust.sync()
        assert trust.trust_scores() == []
        (entry,) = trust.quarantined()
        panel = next(n for n, c in enumerate(coding) if c["code"] == "44249-1")
        assert entry.field is not None and entry.field.endswith(f"code.coding[{panel}]")


# --- HL7 v2: who the result is about ---------------------------------------------------------
def _identifiers(message: dict[str, Any]) -> set[tuple[str, str, str]]:
    """PID-3 repetitions as (id, assigning authority, identifier type)."""
    found = set()
    for repetition in message["PID"][0]["3"]:
        authority = repetition.get("4")
        if isinstance(authority, dict):
            authority = authority.get("1")
        found.add((repetition.get("1"), authority, repetition.get("5")))
    return found


def test_oru_and_mdm_name_the_patient_by_nhs_number_and_the_trusts_own_id(
    tmp_path: Path,
) -> None:
    with trust_harness("hl7v2", tmp_path) as trust:
        referral = trust.referrals[0]
        coding = national_coding(snomed="720433000")
        trust.submit(
            score_bundle(referral, "phq9", PHQ9_ITEMS, coding=coding, note="Session went well.")
        )
        trust.sync()
        patient = next(
            r["patient"] for r in trust.trust.referrals if r["id"] == referral.trust_referral_id
        )
        expected = {
            (patient["nhs_number"], "NHS", "NH"),
            (patient["local_id"], "RXX", "MR"),
        }
        messages = [*trust.trust.messages("ORU^R01"), *trust.trust.messages("MDM^T02")]
        assert len(messages) == 2
        for message in messages:
            assert _identifiers(message) == expected
            assert message["PID"][0]["5"][0]["1"] == patient["family_name"]
            assert message["PID"][0]["5"][0]["2"] == patient["given_name"]
            assert message["PID"][0]["7"][0]["1"] == patient["birth_date"]
        raw = trust.trust.raw_messages("ORU^R01")[0]
        pid = next(s for s in raw.split("\r") if s.startswith("PID|"))
        assert pid.split("|")[3].startswith(f"{patient['nhs_number']}^^^NHS^NH~")


def test_patient_details_are_read_at_push_time_and_never_kept_in_the_outbox(
    tmp_path: Path,
) -> None:
    with trust_harness("hl7v2", tmp_path) as trust:
        trust.submit(score_bundle(trust.referrals[0], "phq9", PHQ9_ITEMS, note="A note."))
        trust.sync()
        patient = trust.trust.referrals[0]["patient"]
        rows = trust.store.outbox_rows(connection=trust.conn.name)
        assert {r.state for r in rows} == {"done"} and len(rows) == 2
        for row in rows:
            stored = row.context or ""
            assert "patient" not in json.loads(stored or "{}")
            for value in (patient["nhs_number"], patient["local_id"], patient["family_name"]):
                assert value not in stored


def test_a_name_full_of_hl7_delimiters_arrives_whole(tmp_path: Path) -> None:
    name = {"family_name": "O|Brien^Smith&Co~\\", "given_name": "Jo~Anne"}
    with trust_harness("hl7v2", tmp_path, patient=name) as trust:
        trust.submit(score_bundle(trust.referrals[0], "phq9", PHQ9_ITEMS))
        trust.sync()
        (message,) = trust.trust.messages("ORU^R01")
        assert message["PID"][0]["5"][0]["1"] == name["family_name"]
        assert message["PID"][0]["5"][0]["2"] == name["given_name"]
        raw = trust.trust.raw_messages("ORU^R01")[0]
        pid = next(s for s in raw.split("\r") if s.startswith("PID|"))
        assert pid.split("|")[5] == r"O\F\Brien\S\Smith\T\Co\R\\E\^Jo\R\Anne"
