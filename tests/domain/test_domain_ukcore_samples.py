"""Our reading of UK Core conventions, checked against the published UK Core examples."""

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from ehr_bridge.domain.facts import PatientFacts, ReferralFacts
from ehr_bridge.domain.nhs_number import is_valid_nhs_number
from ehr_bridge.domain.referral import ProviderRef, build_referral_resources
from ehr_bridge.domain.session import build_score, session_bundle
from ehr_bridge.domain.validate import parse_session_bundle, validate_resource
from ehr_bridge.errors import RecordValidationError
from support.fhir_schema import assert_valid_r4, r4_errors

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "fhir"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / f"ukcore_UKCore-{name}-Example.json").read_text("utf-8"))


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_samples_are_valid_r4_and_parse(path):
    resource = json.loads(path.read_text("utf-8"))
    assert_valid_r4(resource)
    validate_resource(resource)


def test_schema_check_can_fail():
    patient = sample("Patient-RichardSmith")
    patient["gender"] = "F"
    patient["fhir_comments"] = ["x"]
    assert len(r4_errors(patient)) == 2


def _our_patient(nhs_number: str) -> dict:
    facts = ReferralFacts(
        trust_referral_id="SR1",
        received_date=date(2026, 1, 1),
        source_of_referral="A1",
        referred_on_to="IESO01",
        patient=PatientFacts(local_id="L1", nhs_number=nhs_number, nhs_number_status="01"),
    )
    return build_referral_resources(
        "t", ProviderRef("IESO01", "ieso"), facts, allow_test_range=True
    ).patient


def test_nhs_number_identifier_matches_the_uk_core_example_exactly():
    theirs = sample("Patient-RichardSmith")["identifier"][0]
    assert is_valid_nhs_number(theirs["value"])
    ours = _our_patient(theirs["value"])["identifier"][0]
    assert ours == theirs


def test_score_observation_follows_the_uk_core_total_score_pattern():
    theirs = sample("Observation-NPEWSTotal")
    _, ours = build_score(
        observation_id="o",
        response_id="r",
        patient_id="p",
        service_request_id="s",
        encounter_id=None,
        measure_key="phq9",
        items=[0] * 3 + [1] * 3 + [2] * 3,
        effective=datetime(2026, 1, 1, 9, 0, tzinfo=UTC),
    )
    assert ours["category"] == theirs["category"]
    assert ours["status"] == theirs["status"]
    their_quantity = {k: v for k, v in theirs["valueQuantity"].items() if k != "value"}
    assert {k: v for k, v in ours["valueQuantity"].items() if k != "value"} == their_quantity


def test_a_total_of_a_measure_we_do_not_know_is_refused():
    observation = sample("Observation-NPEWSTotal")
    observation["subject"] = {"reference": "Patient/p"}
    observation["basedOn"] = [{"reference": "ServiceRequest/s"}]
    with pytest.raises(RecordValidationError) as caught:
        parse_session_bundle(session_bundle("b", [observation]))
    # the example's date-only time is refused first (our rule: a score needs its time)
    assert caught.value.code == "datetime_precision"
    observation["effectiveDateTime"] = "2023-08-10T09:00:00+01:00"
    with pytest.raises(RecordValidationError) as caught:
        parse_session_bundle(session_bundle("b", [observation]))
    assert caught.value.code == "measure_unknown"
