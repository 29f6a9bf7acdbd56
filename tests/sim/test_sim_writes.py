"""Write-back over HTTP: server-side validation, client-reference uniqueness, status changes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
import sim_client as body
from sim_client import Api, running

PATHS = {
    "care_contact": "/referrals/SR0000001/care-contacts",
    "clinical_note": "/referrals/SR0000001/clinical-notes",
    "assessment": "/referrals/SR0000001/assessments",
    "status": "/referrals/SR0000001/status",
    "risk_alert": "/referrals/SR0000001/risk-alerts",
}
MAKERS: dict[str, Callable[..., dict[str, Any]]] = {
    "care_contact": body.care_contact,
    "clinical_note": body.clinical_note,
    "assessment": body.assessment,
    "status": body.status,
    "risk_alert": body.risk_alert,
}


@pytest.fixture
def api() -> Iterator[Api]:
    with running(seed=2, referrals=4) as client:
        yield client


@pytest.mark.parametrize("kind", list(PATHS))
def test_a_valid_write_is_stored_with_server_fields(api: Api, kind: str) -> None:
    sent = MAKERS[kind]()
    answer = api.post(PATHS[kind], sent)
    assert answer.status_code == 201, answer.text
    item = answer.json()
    assert item["version"] == 1
    assert item["referral_id"] == "SR0000001"
    assert datetime.fromisoformat(item["created_at"]).tzinfo is not None
    assert {k: item[k] for k in sent} == sent
    assert api.get(PATHS[kind]).json() == {"items": [item]}


@pytest.mark.parametrize("kind", list(PATHS))
def test_a_second_write_with_the_same_reference_is_409_with_existing_id(
    api: Api, kind: str
) -> None:
    first = api.post(PATHS[kind], MAKERS[kind]("ref-1")).json()
    again = api.post(PATHS[kind], MAKERS[kind]("ref-1"))
    assert again.status_code == 409
    assert again.json()["existing_id"] == first["id"]
    assert again.json()["field"] == "client_reference"
    assert len(api.get(PATHS[kind]).json()["items"]) == 1


def test_the_same_reference_is_fine_on_another_kind_or_referral(api: Api) -> None:
    assert api.post(PATHS["care_contact"], body.care_contact("shared")).status_code == 201
    assert api.post(PATHS["assessment"], body.assessment("shared")).status_code == 201
    other = "/referrals/SR0000002/care-contacts"
    assert api.post(other, body.care_contact("shared")).status_code == 201


def test_find_by_client_reference(api: Api) -> None:
    ids = [
        api.post(PATHS["clinical_note"], body.clinical_note(f"n{i}")).json()["id"] for i in range(3)
    ]
    found = api.get(PATHS["clinical_note"], client_reference="n1").json()["items"]
    assert [item["id"] for item in found] == [ids[1]]
    assert api.get(PATHS["clinical_note"], client_reference="nope").json() == {"items": []}
    assert len(set(ids)) == 3 and all(i.startswith("CN") for i in ids)


def test_attendance_zero_padding_is_accepted_and_dropped(api: Api) -> None:
    item = api.post(PATHS["care_contact"], body.care_contact(attendance="05")).json()
    assert item["attendance"] == "5"


def test_notes_and_scores_may_link_to_a_care_contact_of_the_same_referral(api: Api) -> None:
    contact = api.post(PATHS["care_contact"], body.care_contact()).json()["id"]
    note = api.post(PATHS["clinical_note"], body.clinical_note(care_contact_id=contact))
    score = api.post(PATHS["assessment"], body.assessment(care_contact_id=contact))
    assert note.status_code == score.status_code == 201
    elsewhere = api.post(
        "/referrals/SR0000002/clinical-notes", body.clinical_note(care_contact_id=contact)
    )
    assert elsewhere.status_code == 422
    assert elsewhere.json()["field"] == "care_contact_id"


def test_other_tools_take_any_score_up_to_1000(api: Api) -> None:
    other = body.assessment(tool_code="1234567", score=400, items=None)
    assert api.post(PATHS["assessment"], other).status_code == 201


INVALID = [
    ("care_contact", {"date": "2026-02-30"}, "date"),
    ("care_contact", {"date": "10/11/2026"}, "date"),
    ("care_contact", {"time": "7:30"}, "time"),
    ("care_contact", {"time": "24:00"}, "time"),
    ("care_contact", {"duration_minutes": 0}, "duration_minutes"),
    ("care_contact", {"duration_minutes": 601}, "duration_minutes"),
    ("care_contact", {"duration_minutes": "50"}, "duration_minutes"),
    ("care_contact", {"duration_minutes": True}, "duration_minutes"),
    ("care_contact", {"appointment_type": "07"}, "appointment_type"),
    ("care_contact", {"attendance": "8"}, "attendance"),
    ("care_contact", {"attendance": 5}, "attendance"),
    ("care_contact", {"consultation_mechanism": "08"}, "consultation_mechanism"),
    ("care_contact", {"client_reference": ""}, "client_reference"),
    ("care_contact", {"client_reference": "x" * 129}, "client_reference"),
    ("care_contact", {"room": "3"}, "room"),
    ("clinical_note", {"authored_at": "2026-11-10"}, "authored_at"),
    ("clinical_note", {"authored_at": "2026-11-10T20:25:00"}, "authored_at"),
    ("clinical_note", {"text": ""}, "text"),
    ("clinical_note", {"text": "x" * 20001}, "text"),
    ("clinical_note", {"title": None}, "title"),
    ("clinical_note", {"care_contact_id": "CC9999999"}, "care_contact_id"),
    ("assessment", {"tool_code": "PHQ9"}, "tool_code"),
    ("assessment", {"score": 28, "items": None}, "score"),
    ("assessment", {"score": 14.5}, "score"),
    ("assessment", {"tool_code": "445455005", "score": 22, "items": None}, "score"),
    ("assessment", {"score": 13}, "items"),
    ("assessment", {"items": [2, 1, 2, 1, 2, 2, 1, 3]}, "items"),
    ("assessment", {"items": [2, 1, 4, 1, 2, 2, 1, 1, 0]}, "items[2]"),
    ("assessment", {"items": "2,1,2"}, "items"),
    ("assessment", {"completed_at": "soon"}, "completed_at"),
    ("status", {"status": "referred_on"}, "status"),
    ("status", {"status": "discharged"}, "end_code"),
    ("status", {"status": "discharged", "end_code": "99"}, "end_code"),
    ("status", {"end_code": "46"}, "end_code"),
    ("status", {"date": "2026-13-01"}, "date"),
    ("risk_alert", {"level": "high"}, "level"),
    ("risk_alert", {"priority": "asap"}, "priority"),
    ("risk_alert", {"priority": "urgent"}, "priority"),  # immediate travels with stat
    ("risk_alert", {"level": "routine_review", "priority": "stat"}, "priority"),
    ("risk_alert", {"reason": "gut_feeling"}, "reason"),
    ("risk_alert", {"raised_at": "2026-11-10T19:41:00"}, "raised_at"),
    ("risk_alert", {"risk_code": "LOCAL-RISK"}, "risk_code"),
    ("risk_alert", {"risk_display": ""}, "risk_display"),
    ("risk_alert", {"summary": "x" * 2001}, "summary"),
    ("risk_alert", {"care_contact_id": "CC9999999"}, "care_contact_id"),
    ("risk_alert", {"status": "acknowledged"}, "status"),  # the trust sets it, not a client
]


@pytest.mark.parametrize(("kind", "changes", "field"), INVALID)
def test_each_rule_answers_422_naming_the_field(
    api: Api, kind: str, changes: dict[str, Any], field: str
) -> None:
    answer = api.post(PATHS[kind], MAKERS[kind](**changes))
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert answer.json()["error"] == "validation"
    assert api.get(PATHS[kind]).json() == {"items": []}


@pytest.mark.parametrize("kind", list(PATHS))
def test_a_missing_required_field_is_named(api: Api, kind: str) -> None:
    sent = MAKERS[kind]()
    del sent["client_reference"]
    answer = api.post(PATHS[kind], sent)
    assert answer.status_code == 422
    assert answer.json()["field"] == "client_reference"


def test_a_body_that_is_not_an_object_is_422_without_a_field(api: Api) -> None:
    answer = api.post(PATHS["care_contact"], [body.care_contact()])
    assert answer.status_code == 422
    assert answer.json()["field"] is None


def test_validation_messages_never_echo_values(api: Api) -> None:
    answer = api.post(PATHS["clinical_note"], body.clinical_note(authored_at="Jane Doe 9990001234"))
    assert "Jane" not in answer.text and "9990001234" not in answer.text


def test_writes_to_an_unknown_referral_are_404(api: Api) -> None:
    answer = api.post("/referrals/SR9999999/care-contacts", body.care_contact())
    assert answer.status_code == 404
    assert api.get("/referrals/SR9999999/status").status_code == 404


def referral(api: Api) -> dict[str, Any]:
    record: dict[str, Any] = api.get("/referrals/SR0000001").json()
    return record


def test_a_status_change_bumps_version_and_updated_at(api: Api) -> None:
    before = referral(api)
    latest = max(datetime.fromisoformat(r["updated_at"]) for r in api.walk())
    event = api.post(PATHS["status"], body.status(status="accepted")).json()
    after = referral(api)
    assert after["status"] == "accepted"
    assert after["version"] == before["version"] + 1
    assert datetime.fromisoformat(after["updated_at"]) > latest
    assert after["updated_at"] == event["created_at"]
    changed = api.walk(referred_on_to=after["referred_on_to"], updated_since=after["updated_at"])
    assert [r["id"] for r in changed] == ["SR0000001"]


def test_artefact_writes_leave_the_referral_unchanged(api: Api) -> None:
    before = referral(api)
    api.post(PATHS["care_contact"], body.care_contact())
    assert referral(api) == before


def test_discharge_records_end_code_and_date_and_closes_the_referral(api: Api) -> None:
    api.post(PATHS["status"], body.status("s1", status="accepted"))
    discharge = body.status("s2", status="discharged", date="2027-01-15", end_code="46")
    assert api.post(PATHS["status"], discharge).status_code == 201
    after = referral(api)
    assert (after["status"], after["end_code"], after["discharge_date"]) == (
        "discharged",
        "46",
        "2027-01-15",
    )
    assert after["version"] == 3
    reopen = api.post(PATHS["status"], body.status("s3", status="accepted"))
    assert reopen.status_code == 422 and reopen.json()["field"] == "status"
    retried = api.post(PATHS["status"], discharge)
    assert retried.status_code == 409
    assert [e["status"] for e in api.get(PATHS["status"]).json()["items"]] == [
        "accepted",
        "discharged",
    ]


RISK_ALERTS = PATHS["risk_alert"]


def test_a_risk_alert_starts_open_and_is_read_one_by_one(api: Api) -> None:
    alert = api.post(RISK_ALERTS, body.risk_alert()).json()
    assert (alert["id"], alert["status"]) == ("RA0000001", "open")
    assert alert["acknowledged_at"] is None and alert["acknowledged_by"] is None
    assert api.get(f"{RISK_ALERTS}/{alert['id']}").json() == alert
    assert api.get(f"{RISK_ALERTS}/RA9999999").status_code == 404
    assert api.http.put(f"{api.base}/api/v1{RISK_ALERTS}/{alert['id']}", json={}).status_code == 405


def test_the_duty_team_acknowledges_then_closes_a_risk_alert(api: Api) -> None:
    alert = api.post(RISK_ALERTS, body.risk_alert()).json()
    where = f"{RISK_ALERTS}/{alert['id']}/acknowledge"
    seen = api.post(where, {"by": "duty.clinician1"})
    assert seen.status_code == 200, seen.text
    acknowledged = seen.json()
    assert acknowledged["status"] == "acknowledged" and acknowledged["version"] == 2
    assert acknowledged["acknowledged_by"] == "duty.clinician1"
    assert acknowledged["acknowledged_at"] == acknowledged["updated_at"]
    assert api.post(where, {"by": "someone.else"}).json() == acknowledged  # the first stamp stays
    closed = api.post(where, {"by": "someone.else", "close": True}).json()
    assert closed["status"] == "closed" and closed["acknowledged_by"] == "duty.clinician1"
    assert api.get(f"{RISK_ALERTS}/{alert['id']}").json() == closed


def test_an_alert_can_be_closed_at_once(api: Api) -> None:
    alert = api.post(RISK_ALERTS, body.risk_alert()).json()
    where = f"{RISK_ALERTS}/{alert['id']}/acknowledge"
    closed = api.post(where, {"by": "duty@trust", "close": True}).json()
    assert (closed["status"], closed["acknowledged_by"]) == ("closed", "duty@trust")


@pytest.mark.parametrize(
    ("sent", "field"),
    [
        ({"by": "Dr Jane Doe"}, "by"),
        ({"by": "x" * 65}, "by"),
        ({}, "by"),
        ({"by": "duty1", "close": "yes"}, "close"),
        ({"by": "duty1", "when": "now"}, "when"),
    ],
)
def test_an_acknowledgement_is_checked(api: Api, sent: dict[str, Any], field: str) -> None:
    alert = api.post(RISK_ALERTS, body.risk_alert()).json()
    answer = api.post(f"{RISK_ALERTS}/{alert['id']}/acknowledge", sent)
    assert answer.status_code == 422 and answer.json()["field"] == field
    assert "Jane" not in answer.text
    assert api.get(f"{RISK_ALERTS}/{alert['id']}").json()["status"] == "open"
    assert api.post(f"{RISK_ALERTS}/RA9999999/acknowledge", {"by": "d1"}).status_code == 404
