"""The PC-MIS-style simulator over HTTP: its dialect, numbered pages, strict writes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from ehr_bridge.cli.sim import app as sim_app
from ehr_bridge.errors import RecordValidationError
from ehr_bridge.sim.pcmis import KEY_HEADER, PcmisSimulator
from ehr_bridge.sim.pcmis.records import parse_date

KEY = "sim-test-key"
APPOINTMENT = {
    "ExternalRef": "ext-1",
    "AppointmentDate": "10/11/2026",
    "StartTime": "19:30",
    "DurationMins": 50,
    "AppointmentType": "TREAT",
    "Outcome": "ATT",
    "Medium": "IM",
}


@pytest.fixture(scope="module")
def sim() -> Iterator[PcmisSimulator]:
    with PcmisSimulator(seed=8, referrals=9, hostile=6, api_key=KEY) as simulator:
        yield simulator


def get(sim: PcmisSimulator, path: str, **params: Any) -> requests.Response:
    return requests.get(sim.api_url + path, params=params, headers={KEY_HEADER: KEY}, timeout=5)


def post(sim: PcmisSimulator, path: str, body: Any) -> requests.Response:
    return requests.post(sim.api_url + path, json=body, headers={KEY_HEADER: KEY}, timeout=5)


def ours(sim: PcmisSimulator) -> list[str]:
    refs = [e["referral"] for e in sim.export()["referrals"]]
    return [r["ReferralRef"] for r in refs if r["Onward"]["ServiceCode"] == "IESO01"]


def test_records_are_in_the_pcmis_dialect(sim: PcmisSimulator) -> None:
    record = get(sim, f"/referrals/{ours(sim)[0]}").json()
    assert parse_date(record["DateReceived"]) <= datetime(2026, 11, 1).date()
    sources = {"GP", "SELF", "PCOTH", "CARER", "LA", "EMP", "VOL", "SEC", "TRANS", "OTHER"}
    assert record["Status"] == "ONW" and record["Source"]["Code"] in sources
    client = record["Client"]
    assert isinstance(client["ClientId"], int)
    assert client["NHSNumber"].count(" ") == 2 and client["Sex"] in {"M", "F", "I", "U"}
    modified = datetime.fromisoformat(record["LastModified"])
    assert modified.utcoffset() is not None


def test_numbered_pages_with_totals_and_link_headers(sim: PcmisSimulator) -> None:
    first = get(sim, "/referrals", onwardService="IESO01", pageSize=4)
    body = first.json()
    total = body["paging"]["totalRecords"]
    assert total == len(ours(sim)) == 15
    assert body["paging"]["totalPages"] == 4 and len(body["data"]) == 4
    assert first.links["next"]["url"].endswith("pageNumber=2")
    seen = [r["ReferralRef"] for r in body["data"]]
    for number in range(2, 5):
        page = get(sim, "/referrals", onwardService="IESO01", pageSize=4, pageNumber=number)
        seen += [r["ReferralRef"] for r in page.json()["data"]]
    assert "next" not in page.links and page.links["prev"]["url"].endswith("pageNumber=3")
    assert sorted(seen) == sorted(ours(sim))
    stamps = [datetime.fromisoformat(r["LastModified"]) for r in body["data"]]
    assert stamps == sorted(stamps)


def test_modified_since_is_inclusive_and_needs_an_offset(sim: PcmisSimulator) -> None:
    records = get(sim, "/referrals", onwardService="IESO01", pageSize=200).json()["data"]
    middle = sorted(records, key=lambda r: datetime.fromisoformat(r["LastModified"]))[7]
    later = get(sim, "/referrals", onwardService="IESO01", modifiedSince=middle["LastModified"])
    assert later.json()["data"][0]["ReferralRef"] == middle["ReferralRef"]
    naive = get(sim, "/referrals", modifiedSince="2026-10-01T00:00:00")
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "modifiedSince"
    assert get(sim, "/referrals", pageSize=0).status_code == 422


def test_the_key_header_is_required(sim: PcmisSimulator) -> None:
    for headers in ({}, {KEY_HEADER: "wrong"}, {"Authorization": f"Bearer {KEY}"}):
        answer = requests.get(sim.api_url + "/referrals", headers=headers, timeout=5)
        assert answer.status_code == 401
    assert requests.get(sim.base_url + "/_sim/health", timeout=5).json() == {"ok": True}


def test_writes_are_validated_naming_the_field(sim: PcmisSimulator) -> None:
    ref = ours(sim)[1]
    for change, field in [
        ({"AppointmentDate": "2026-11-10"}, "AppointmentDate"),
        ({"AppointmentDate": "31/02/2026"}, "AppointmentDate"),
        ({"Outcome": "5"}, "Outcome"),
        ({"DurationMins": "50"}, "DurationMins"),
        ({"Colour": "red"}, "Colour"),
    ]:
        answer = post(sim, f"/referrals/{ref}/appointments", {**APPOINTMENT, **change})
        assert answer.status_code == 422, change
        assert answer.json()["errors"][0]["field"] == field
    bad_sum = {
        "ExternalRef": "q1",
        "Measure": "GAD7",
        "TotalScore": 5,
        "DateCompleted": "10/11/2026",
    }
    answer = post(sim, f"/referrals/{ref}/questionnaires", {**bad_sum, "Answers": [1] * 7})
    assert answer.json()["errors"][0]["field"] == "Answers"
    note = {"ExternalRef": "n1", "NoteDate": "10/11/2026", "NoteTime": "20:00", "Body": "x"}
    answer = post(sim, f"/referrals/{ref}/notes", {**note, "AppointmentId": 99999})
    assert answer.json()["errors"][0]["field"] == "AppointmentId"
    assert post(sim, "/referrals/NOPE/notes", note).status_code == 404


def test_a_reused_external_ref_is_refused_with_the_existing_id(sim: PcmisSimulator) -> None:
    ref = ours(sim)[2]
    created = post(sim, f"/referrals/{ref}/appointments", {**APPOINTMENT, "ExternalRef": "dup"})
    assert created.status_code == 201
    again = post(sim, f"/referrals/{ref}/appointments", {**APPOINTMENT, "ExternalRef": "dup"})
    assert again.status_code == 409
    assert again.json()["existingId"] == created.json()["AppointmentId"]
    found = get(sim, f"/referrals/{ref}/appointments", externalRef="dup").json()["data"]
    assert [a["AppointmentId"] for a in found] == [created.json()["AppointmentId"]]


def test_status_changes_move_the_referral_and_close_it(sim: PcmisSimulator) -> None:
    ref = ours(sim)[3]
    before = get(sim, f"/referrals/{ref}").json()
    change = {"ExternalRef": "s1", "Status": "ACC", "EffectiveDate": "03/11/2026"}
    assert post(sim, f"/referrals/{ref}/status-changes", change).status_code == 201
    refused = post(
        sim, f"/referrals/{ref}/status-changes", {**change, "ExternalRef": "s2", "Status": "DIS"}
    )
    assert refused.json()["errors"][0]["field"] == "DischargeReason"
    discharge = {**change, "ExternalRef": "s3", "Status": "DIS", "DischargeReason": "COMPLETED"}
    assert post(sim, f"/referrals/{ref}/status-changes", discharge).status_code == 201
    after = get(sim, f"/referrals/{ref}").json()
    assert after["Status"] == "DIS" and after["Discharge"] == {
        "Date": "03/11/2026",
        "Reason": "COMPLETED",
    }
    assert after["Revision"] == before["Revision"] + 2
    assert datetime.fromisoformat(after["LastModified"]) > datetime.fromisoformat(
        before["LastModified"]
    )
    closed = post(sim, f"/referrals/{ref}/status-changes", {**change, "ExternalRef": "s4"})
    assert closed.status_code == 422


RISK = {
    "ExternalRef": "r1",
    "Severity": "URGENT",
    "Priority": "P2",
    "Source": "ASSESSMENT",
    "RaisedDate": "10/11/2026",
    "RaisedTime": "19:41",
    "RiskCode": "225444004",
}


def test_risk_alerts_are_validated_stored_open_and_unique(sim: PcmisSimulator) -> None:
    ref = ours(sim)[4]
    for change, field in [
        ({"Severity": "HIGH"}, "Severity"),
        ({"Priority": "P1"}, "Priority"),  # URGENT travels with P2
        ({"Source": "phq9_item9"}, "Source"),
        ({"RaisedDate": "2026-11-10"}, "RaisedDate"),
        ({"RaisedTime": "7:41"}, "RaisedTime"),
        ({"RiskCode": "RISK"}, "RiskCode"),
        ({"Status": "CLOSED"}, "Status"),
    ]:
        answer = post(sim, f"/referrals/{ref}/risk-alerts", {**RISK, **change})
        assert answer.status_code == 422, change
        assert answer.json()["errors"][0]["field"] == field
    created = post(sim, f"/referrals/{ref}/risk-alerts", RISK)
    assert created.status_code == 201
    alert = created.json()
    assert (alert["Status"], alert["AcknowledgedAt"], alert["AcknowledgedBy"]) == (
        "OPEN",
        None,
        None,
    )
    again = post(sim, f"/referrals/{ref}/risk-alerts", RISK)
    assert again.status_code == 409 and again.json()["existingId"] == alert["RiskAlertId"]
    found = get(sim, f"/referrals/{ref}/risk-alerts", externalRef="r1").json()["data"]
    assert found == [alert]


def test_the_duty_worker_acknowledges_a_risk_alert(sim: PcmisSimulator) -> None:
    ref = ours(sim)[5]
    alert = post(sim, f"/referrals/{ref}/risk-alerts", {**RISK, "ExternalRef": "r2"}).json()
    number = alert["RiskAlertId"]
    with pytest.raises(RecordValidationError, match="user id"):
        sim.state.acknowledge_risk_alert(ref, number, "Dr Jo Bloggs")
    seen = sim.state.acknowledge_risk_alert(ref, number, "duty.worker1")
    assert (seen["Status"], seen["AcknowledgedBy"]) == ("ACKNOWLEDGED", "duty.worker1")
    assert datetime.fromisoformat(seen["AcknowledgedAt"]).utcoffset() is not None
    closed = sim.state.acknowledge_risk_alert(ref, number, "someone.else", close=True)
    assert closed == {**seen, "Status": "CLOSED"}
    listed = get(sim, f"/referrals/{ref}/risk-alerts", externalRef="r2").json()["data"]
    assert listed == [closed]
    with pytest.raises(RecordValidationError, match="no such risk alert"):
        sim.state.acknowledge_risk_alert(ref, 99999, "duty.worker1")


def put(sim: PcmisSimulator, path: str, body: Any) -> requests.Response:
    return requests.put(sim.api_url + path, json=body, headers={KEY_HEADER: KEY}, timeout=5)


def control(sim: PcmisSimulator, method: str, path: str, body: Any = None) -> requests.Response:
    url = f"{sim.base_url}/_sim/referrals/{path}"
    return requests.request(method, url, json=body, headers={KEY_HEADER: KEY}, timeout=5)


def test_items_are_read_back_and_overwritten_with_their_own_external_ref(
    sim: PcmisSimulator,
) -> None:
    ref = ours(sim)[6]
    created = post(sim, f"/referrals/{ref}/appointments", {**APPOINTMENT, "ExternalRef": "up-1"})
    item_id = created.json()["AppointmentId"]
    listed = get(sim, f"/referrals/{ref}/appointments").json()["data"]
    assert [a["ExternalRef"] for a in listed] == ["up-1"]
    changed = {**APPOINTMENT, "ExternalRef": "up-1", "DurationMins": 30}
    answer = put(sim, f"/referrals/{ref}/appointments/{item_id}", changed)
    assert answer.status_code == 200 and answer.json()["DurationMins"] == 30
    assert answer.json()["AppointmentId"] == item_id
    other = put(sim, f"/referrals/{ref}/appointments/{item_id}", {**changed, "ExternalRef": "x"})
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "ExternalRef"
    invalid = put(sim, f"/referrals/{ref}/appointments/{item_id}", {**changed, "Outcome": "5"})
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "Outcome"
    assert put(sim, f"/referrals/{ref}/appointments/99999", changed).status_code == 404
    assert put(sim, f"/referrals/NOPE/appointments/{item_id}", changed).status_code == 404
    status = {"ExternalRef": "st-1", "Status": "ACC", "EffectiveDate": "03/11/2026"}
    status_id = post(sim, f"/referrals/{ref}/status-changes", status).json()["StatusChangeId"]
    assert put(sim, f"/referrals/{ref}/status-changes/{status_id}", status).status_code == 404


def test_people_at_the_trust_edit_delete_and_fix_through_the_control_routes(
    sim: PcmisSimulator,
) -> None:
    ref = ours(sim)[7]
    note = {"ExternalRef": "on-1", "NoteDate": "10/11/2026", "NoteTime": "20:00", "Body": "x"}
    note_id = post(sim, f"/referrals/{ref}/notes", note).json()["NoteId"]
    edited = control(sim, "POST", f"{ref}/notes/{note_id}/edit", {"Body": "edited"})
    assert edited.status_code == 200 and edited.json()["Body"] == "edited"
    refused = control(sim, "POST", f"{ref}/notes/{note_id}/edit", {"NoteId": 1})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "NoteId"
    assert control(sim, "POST", f"{ref}/notes/{note_id}/edit", [1]).status_code == 422
    assert control(sim, "DELETE", f"{ref}/notes/{note_id}").json()["Body"] == "edited"
    assert get(sim, f"/referrals/{ref}/notes").json()["data"] == []
    assert control(sim, "DELETE", f"{ref}/notes/{note_id}").status_code == 404
    assert (
        requests.delete(f"{sim.base_url}/_sim/referrals/{ref}/notes/1", timeout=5).status_code
        == 401
    )

    broken = sorted(sim.state.hostile_fields)[0]
    before = get(sim, f"/referrals/{broken}").json()
    fixed = control(sim, "POST", f"{broken}/fix")
    assert fixed.status_code == 200 and broken not in sim.state.hostile_fields
    after = fixed.json()
    assert after["Revision"] == before["Revision"] + 1 and datetime.fromisoformat(
        after["LastModified"]
    ) > datetime.fromisoformat(before["LastModified"])
    assert after != {**before, "Revision": after["Revision"], "LastModified": after["LastModified"]}
    assert control(sim, "POST", f"{broken}/fix").status_code == 422
    assert control(sim, "POST", "NOPE/fix").status_code == 404


def test_same_seed_same_records_and_hostile_fields_named() -> None:
    one, two = (
        PcmisSimulator(seed=5, referrals=4, hostile=6),
        PcmisSimulator(seed=5, referrals=4, hostile=6),
    )
    assert one.export() == two.export()
    fields = ["received_date", "patient.gender", "patient.nhs_number", "patient.local_id"]
    fields += ["source_of_referral", "received_date"]
    assert sorted(one.state.hostile_fields.values()) == sorted(fields)


def test_faults_answer_the_next_requests(sim: PcmisSimulator) -> None:
    sim.fail_next(503, count=1, retry_after=2)
    answer = get(sim, "/referrals")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"
    assert get(sim, "/referrals").status_code == 200


def test_clock_moves_forward_for_every_change() -> None:
    fixed = datetime(2030, 1, 1, tzinfo=UTC)
    simulator = PcmisSimulator(seed=2, referrals=2, clock=lambda: fixed)
    ref = simulator.export()["referrals"][0]["referral"]["ReferralRef"]
    first = simulator.state.update_referral(ref, {"Diagnosis": "F41.0"})["LastModified"]
    second = simulator.state.update_referral(ref, {"Diagnosis": "F41.1"})["LastModified"]
    assert datetime.fromisoformat(second) > datetime.fromisoformat(first) >= fixed


def test_serve_pcmis_reports_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(sim_app, ["serve-pcmis", "--port", str(port)])
    assert result.exit_code == 2
    assert "port" in result.output
