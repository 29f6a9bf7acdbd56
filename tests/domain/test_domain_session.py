import base64
from datetime import date, datetime, timedelta, timezone

import pytest

from ehr_bridge.domain import codes
from ehr_bridge.domain.measures import MEASURES, measure_coding
from ehr_bridge.domain.session import (
    build_encounter,
    build_episode_end,
    build_note,
    build_score,
    score_quantity,
    session_bundle,
)
from ehr_bridge.domain.validate import (
    note_text,
    parse_session_bundle,
    questionnaire_items,
    validate_resource,
)
from ehr_bridge.errors import RecordValidationError
from support.fhir_schema import assert_valid_r4

LONDON_SUMMER = timezone(timedelta(hours=1))
START = datetime(2026, 7, 3, 21, 30, tzinfo=LONDON_SUMMER)
IDS = {"patient_id": "p-1", "service_request_id": "sr-1"}


def encounter(**changes):
    args = {
        "encounter_id": "enc-1",
        "start": START,
        "end": START + timedelta(minutes=50),
        "therapist": "Therapist 7",
        **IDS,
    }
    return build_encounter(**(args | changes))


def score(measure_key="phq9", items=(1, 2, 3, 0, 1, 2, 3, 0, 1), **changes):
    args = {
        "observation_id": "obs-1",
        "response_id": "qr-1",
        "encounter_id": "enc-1",
        "measure_key": measure_key,
        "items": list(items),
        "effective": START,
        **IDS,
    }
    return build_score(**(args | changes))


def note(**changes):
    args = {
        "document_id": "doc-1",
        "encounter_id": "enc-1",
        "text": "Session 3: practised thought records. Plan: homework on sleep.",
        "authored": START + timedelta(hours=1),
        "author": "Therapist 7",
        **IDS,
    }
    return build_note(**(args | changes))


def episode(**changes):
    args = {
        "episode_id": "ep-1",
        "start": date(2026, 5, 1),
        "end": date(2026, 7, 31),
        "end_code": "46",
        **IDS,
    }
    return build_episode_end(**(args | changes))


def all_resources():
    response, observation = score()
    return [encounter(), response, observation, note(), episode()]


@pytest.mark.parametrize("index", range(5))
def test_every_builder_output_is_valid_r4_and_round_trips(index):
    resource = all_resources()[index]
    assert_valid_r4(resource)
    assert validate_resource(resource) == resource
    assert resource["meta"]["profile"] == [codes.UKCORE_PROFILE.format(resource["resourceType"])]


def test_bundle_is_valid_r4_with_urn_uuid_full_urls():
    resources = all_resources()
    bundle = session_bundle("b-1", resources)
    assert_valid_r4(bundle)
    assert (bundle["type"], bundle["id"]) == ("collection", "b-1")
    assert [e["fullUrl"] for e in bundle["entry"]] == [f"urn:uuid:{r['id']}" for r in resources]
    assert [e["resource"] for e in bundle["entry"]] == resources


def test_encounter_codes_and_keeps_the_local_offset():
    enc = encounter()
    assert enc["status"] == "finished"
    assert enc["class"]["code"] == "VR"
    app, mech = (t["coding"][0] for t in enc["type"])
    assert (app["system"], app["code"]) == (codes.DATASET_APPOINTMENT_TYPE, "02")
    assert (mech["system"], mech["code"]) == (codes.DATASET_CONSULTATION_MECHANISM, "10")
    assert mech["display"] == "Instant messaging (synchronous)"
    attendance = enc["extension"][0]
    assert attendance["url"] == codes.ATTENDANCE_EXTENSION
    assert attendance["valueCoding"]["code"] == "5"
    assert enc["period"] == {
        "start": "2026-07-03T21:30:00+01:00",
        "end": "2026-07-03T22:20:00+01:00",
    }
    assert enc["basedOn"] == [{"reference": "ServiceRequest/sr-1"}]
    assert enc["identifier"] == [{"system": codes.artefact_identifier_system(), "value": "enc-1"}]
    assert enc["participant"] == [{"individual": {"display": "Therapist 7"}}]


@pytest.mark.parametrize(
    ("attendance", "status"),
    [("6", "finished"), ("2", "cancelled"), ("3", "cancelled"), ("7", "cancelled")],
)
def test_encounter_status_follows_attendance(attendance, status):
    assert encounter(attendance=attendance)["status"] == status


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"attendance": "05"}, "attendance"),
        ({"attendance": "1"}, "attendance"),
        ({"appointment_type": "2"}, "appointment_type"),
        ({"consultation_mechanism": "08"}, "consultation_mechanism"),
        ({"start": datetime(2026, 7, 3, 21, 30)}, "period.start"),
        ({"end": START - timedelta(minutes=1)}, "period"),
    ],
)
def test_encounter_refuses_codes_outside_the_lists_and_naive_times(changes, field):
    with pytest.raises(RecordValidationError) as caught:
        encounter(**changes)
    assert caught.value.field == field


def test_score_pair():
    response, observation = score()
    assert response["status"] == "completed"
    assert response["questionnaire"] == MEASURES["phq9"].questionnaire_url
    assert questionnaire_items(response) == [1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert observation["status"] == "final"
    assert observation["category"][0]["coding"][0]["code"] == "survey"
    assert observation["code"]["coding"] == measure_coding(MEASURES["phq9"])
    assert observation["valueQuantity"] == {
        "value": 13,
        "unit": "ScoreOf",
        "system": codes.UCUM,
        "code": "{ScoreOf}",
    }
    assert observation["derivedFrom"] == [{"reference": "QuestionnaireResponse/qr-1"}]
    assert observation["encounter"] == {"reference": "Encounter/enc-1"}
    assert observation["effectiveDateTime"] == "2026-07-03T21:30:00+01:00"


def test_wsas_missing_item_has_no_answer_and_a_substituted_total():
    response, observation = score("wsas", [None, 4, 4, 4, 4])
    assert response["item"][0] == {"linkId": "1"}
    assert observation["valueQuantity"]["value"] == 20
    assert_valid_r4(response)


def test_wsas_pro_rated_total_is_a_decimal_valid_r4_and_accepted_by_collect():
    response, observation = score("wsas", [3, 4, None, 4, 4])
    assert observation["valueQuantity"]["value"] == 18.75
    assert_valid_r4(observation)
    parsed = parse_session_bundle(session_bundle("b", [response, observation]))
    assert parsed.observations[0]["valueQuantity"]["value"] == 18.75


def test_score_quantity_keeps_an_int_and_two_places():
    assert score_quantity(13)["value"] == 13
    assert score_quantity(6.25)["value"] == 6.25


def test_score_without_encounter():
    response, observation = score(encounter_id=None)
    assert "encounter" not in response and "encounter" not in observation


@pytest.mark.parametrize(
    ("measure_key", "items", "field"),
    [
        ("nope", [1] * 9, "measure_key"),
        ("pdss", [1] * 7, "measure_key"),
        ("gad7", [1] * 9, "item"),
        ("gad7", [1, 1, 1, 1, 1, 1, 9], "item[6]"),
    ],
)
def test_score_refuses_unknown_disabled_or_bad_items(measure_key, items, field):
    with pytest.raises(RecordValidationError) as caught:
        score(measure_key, items)
    assert caught.value.field == field


def test_note_round_trips_unicode_text():
    text = "Patient said \u201cI\u2019m sleeping better\u201d \u2014 café, naïve, \U0001f60a"
    doc = note(text=text, title="Session 3 note")
    assert note_text(doc) == text
    attachment = doc["content"][0]["attachment"]
    assert attachment["contentType"] == "text/plain; charset=utf-8"
    assert base64.b64decode(attachment["data"]).decode("utf-8") == text
    assert (attachment["title"], doc["description"]) == ("Session 3 note", "Session 3 note")
    assert doc["masterIdentifier"] == {
        "system": codes.artefact_identifier_system(),
        "value": "doc-1",
    }
    assert (doc["status"], doc["docStatus"]) == ("current", "final")
    assert doc["type"]["coding"][0]["code"] == "11506-3"
    assert doc["context"] == {
        "encounter": [{"reference": "Encounter/enc-1"}],
        "related": [{"reference": "ServiceRequest/sr-1"}],
    }


def test_note_refuses_empty_text():
    with pytest.raises(RecordValidationError) as caught:
        note(text=" \n ")
    assert caught.value.code == "note_empty"


def test_note_without_author():
    assert "author" not in note(author=None)


def test_episode_end():
    ep = episode()
    assert ep["status"] == "finished"
    assert ep["period"] == {"start": "2026-05-01", "end": "2026-07-31"}
    assert ep["referralRequest"] == [{"reference": "ServiceRequest/sr-1"}]
    assert ep["extension"][0]["url"] == codes.END_CODE_EXTENSION
    assert ep["extension"][0]["valueCoding"]["code"] == "46"


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"end_code": "99"}, "end_code"), ({"end": date(2026, 4, 1)}, "period")],
)
def test_episode_end_refuses_unknown_codes_and_reversed_periods(changes, field):
    with pytest.raises(RecordValidationError) as caught:
        episode(**changes)
    assert caught.value.field == field
