"""Risk events from a provider's session bundle: what the trust's duty team must see today."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from ehr_bridge.domain import risk
from ehr_bridge.domain.session import (
    build_encounter,
    build_risk_flag,
    build_score,
    session_bundle,
)
from ehr_bridge.domain.validate import parse_session_bundle, validate_resource
from ehr_bridge.errors import RecordValidationError

START = datetime(2026, 11, 3, 18, 0, tzinfo=UTC)
SELF_HARM = ("248062006", "Self-injurious behavior")


def _encounter() -> dict:
    return build_encounter(
        encounter_id="enc-1",
        patient_id="pat-1",
        service_request_id="sr-1",
        start=START,
        end=START + timedelta(minutes=50),
    )


def _phq9(item9: int, *, response_id: str = "qr-1") -> list[dict]:
    items = [1, 1, 1, 1, 1, 1, 1, 1, item9]
    response, observation = build_score(
        observation_id=f"obs-{response_id}",
        response_id=response_id,
        patient_id="pat-1",
        service_request_id="sr-1",
        encounter_id="enc-1",
        measure_key="phq9",
        items=items,
        effective=START + timedelta(minutes=40),
    )
    return [response, observation]


def _flag(**changes: object) -> dict:
    flag = build_risk_flag(
        flag_id="flag-1",
        patient_id="pat-1",
        service_request_id="sr-1",
        raised=START + timedelta(minutes=30),
        concept=SELF_HARM,
        encounter_id="enc-1",
    )
    flag.update(changes)
    return flag


def _events(resources: list[dict], rules=risk.DEFAULT_RULES) -> list[risk.RiskEvent]:
    artefacts = parse_session_bundle(session_bundle("b-1", resources))
    return risk.risk_events(
        artefacts.patient_id, artefacts.risks, artefacts.questionnaire_responses, rules
    )


@pytest.mark.parametrize("item9", [1, 2, 3])
def test_phq9_item_9_above_zero_is_an_urgent_risk_coded_suicidal_thoughts(item9):
    [event] = _events([_encounter(), *_phq9(item9)])
    assert event.level == "urgent" and event.reason == "phq9_item9"
    assert event.source == "QuestionnaireResponse/qr-1"
    assert event.encounter_id == "enc-1"
    assert event.flag["code"]["coding"][0]["code"] == "6471006"
    assert event.context()["priority"] == "urgent"
    validate_resource(copy.deepcopy(event.flag))  # our Flag is valid FHIR R4


def test_phq9_item_9_at_zero_raises_nothing():
    assert _events([_encounter(), *_phq9(0)]) == []


def test_rules_are_data_and_the_highest_level_that_fires_wins():
    rules = (
        risk.ItemRule("phq9", 9, 1, "routine_review"),
        risk.ItemRule("phq9", 9, 3, "immediate"),
    )
    assert [e.level for e in _events([_encounter(), *_phq9(2)], rules)] == ["routine_review"]
    assert [e.level for e in _events([_encounter(), *_phq9(3)], rules)] == ["immediate"]


def test_the_same_risk_sent_twice_is_the_same_event():
    first = _events([_encounter(), *_phq9(2)])[0]
    again = _events([_encounter(), *_phq9(2)])[0]
    other = _events([_encounter(), *_phq9(2, response_id="qr-2")])[0]
    assert first.id == again.id != other.id
    assert len(first.id) <= 64


def test_a_provider_flag_raises_its_level_and_carries_only_the_shareable_line():
    flag = build_risk_flag(
        flag_id="flag-1",
        patient_id="pat-1",
        service_request_id="sr-1",
        raised=START,
        concept=SELF_HARM,
        level="immediate",
        shareable_text="Call the patient today",
    )
    [event] = _events([flag])  # a bundle of the flag alone: its referral is in the extension
    assert (event.level, event.reason, event.summary) == (
        "immediate",
        "provider_flag",
        "Call the patient today",
    )
    assert event.flag["code"]["coding"][0]["code"] == SELF_HARM[0]


def test_an_inactive_flag_raises_nothing_but_is_accepted():
    assert _events([_encounter(), _flag(status="inactive")]) == []


def test_a_flag_without_a_snomed_code_refuses_its_bundle_naming_the_field():
    flag = _flag(code={"text": "at risk"})
    with pytest.raises(RecordValidationError) as caught:
        _events([_encounter(), flag])
    assert caught.value.code == "risk_code" and caught.value.field.endswith(".code")


def test_a_risk_alone_without_its_referral_is_refused():
    flag = _flag()
    flag["extension"] = [e for e in flag["extension"] if e["url"] != risk.REFERRAL_EXTENSION]
    with pytest.raises(RecordValidationError) as caught:
        _events([flag])
    assert caught.value.code == "reference"


def test_a_risk_for_another_referral_is_refused():
    flag = _flag()
    flag["extension"][0]["valueReference"] = {"reference": "ServiceRequest/sr-2"}
    with pytest.raises(RecordValidationError) as caught:
        _events([_encounter(), flag])
    assert caught.value.code == "reference_mismatch"


def test_an_unknown_level_is_refused():
    flag = _flag()
    flag["extension"][1]["valueCode"] = "panic"
    with pytest.raises(RecordValidationError) as caught:
        _events([_encounter(), flag])
    assert caught.value.field.endswith("extension(risk-level)")


def test_a_date_only_time_is_refused():
    flag = _flag(period={"start": "2026-11-03"})
    with pytest.raises(RecordValidationError) as caught:
        _events([_encounter(), flag])
    assert caught.value.code == "datetime_precision"


def test_free_text_the_provider_did_not_mark_shareable_never_travels():
    flag = _flag(code={"coding": [{"system": "http://snomed.info/sct", "code": SELF_HARM[0]}]})
    flag["code"]["text"] = "private clinical detail"
    [event] = _events([_encounter(), flag])
    assert "private clinical detail" not in repr(event)


def _risk_assessment(**changes: object) -> dict:
    assessment = {
        "resourceType": "RiskAssessment",
        "id": "ra-1",
        "status": "final",
        "subject": {"reference": "Patient/pat-1"},
        "basedOn": {"reference": "ServiceRequest/sr-1"},
        "occurrenceDateTime": START.isoformat(),
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "225444004"}]},
    }
    assessment.update(changes)
    return assessment


def _prediction(code: str) -> list[dict]:
    coding = {"system": risk.RISK_PROBABILITY, "code": code}
    return [{"qualitativeRisk": {"coding": [coding]}}]


@pytest.mark.parametrize(
    ("probability", "level"),
    [("low", "routine_review"), ("moderate", "urgent"), ("high", "immediate")],
)
def test_a_risk_assessment_takes_its_level_from_the_predicted_risk(probability, level):
    [event] = _events([_risk_assessment(prediction=_prediction(probability))])
    assert (event.level, event.reason) == (level, "risk_assessment")


def test_a_negligible_or_cancelled_risk_assessment_raises_nothing():
    assert _events([_risk_assessment(prediction=_prediction("negligible"))]) == []
    assert _events([_risk_assessment(status="cancelled")]) == []


def test_a_detected_issue_takes_its_level_from_its_severity():
    issue = {
        "resourceType": "DetectedIssue",
        "id": "di-1",
        "status": "final",
        "severity": "high",
        "patient": {"reference": "Patient/pat-1"},
        "identifiedDateTime": START.isoformat(),
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": SELF_HARM[0]}]},
    }
    [event] = _events([_encounter(), issue])
    assert (event.level, event.reason) == ("immediate", "detected_issue")


@pytest.mark.parametrize(
    "rule",
    [
        risk.ItemRule("nope", 9, 1, "urgent"),
        risk.ItemRule("phq9", 10, 1, "urgent"),
        risk.ItemRule("phq9", 9, 0, "urgent"),
        risk.ItemRule("phq9", 9, 4, "urgent"),
        risk.ItemRule("gad7", 3, 2, "urgent"),  # another item needs its own SNOMED concept
    ],
)
def test_a_rule_that_could_never_fire_is_refused(rule):
    with pytest.raises(ValueError):
        risk.check_rules([rule])


def test_the_default_rules_pass_their_own_check():
    risk.check_rules(risk.DEFAULT_RULES)
    risk.check_rules([risk.ItemRule("gad7", 3, 2, "urgent", concept=risk.SUICIDAL_THOUGHTS)])
