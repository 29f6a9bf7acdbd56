"""HTTP behaviour: auth, unknown paths, malformed and oversized bodies, logs, faults, threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
import requests
from sim_client import TOKEN, Api, care_contact, running

from ehr_bridge.sim import Fault, TrustSimulator
from ehr_bridge.sim.server import MAX_BODY

CONTACTS = "/referrals/SR0000001/care-contacts"


@pytest.fixture
def api() -> Iterator[Api]:
    with running(seed=3, referrals=3) as client:
        yield client


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer", f"bearer{TOKEN}"]
)
def test_missing_or_wrong_token_is_401(api: Api, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for path in ("/api/v1/referrals", "/api/v1/referrals/SR0000001", "/_sim/export", "/nowhere"):
        answer = requests.get(f"{api.base}{path}", headers=headers, timeout=5)
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_writes_need_the_token_too(api: Api) -> None:
    answer = requests.post(f"{api.base}/api/v1{CONTACTS}", json=care_contact(), timeout=5)
    assert answer.status_code == 401
    assert api.sim.state.list_items("SR0000001", "care_contact") == []


def test_health_needs_no_token(api: Api) -> None:
    assert requests.get(f"{api.base}/_sim/health", timeout=5).json() == {"ok": True}


def test_unknown_path_is_404_and_wrong_method_405(api: Api) -> None:
    assert api.get("/patients").status_code == 404
    assert api.get("/referrals/SR0000001/letters").status_code == 404
    answer = api.http.delete(f"{api.base}/api/v1/referrals/SR0000001", timeout=5)
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET"


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe{}", b"{'a': 1}"])
def test_malformed_json_is_400(api: Api, raw: bytes) -> None:
    answer = api.http.post(
        f"{api.base}/api/v1{CONTACTS}",
        data=raw,
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "malformed_json",
        "message": "body is not valid UTF-8 JSON",
        "field": None,
    }


def test_bodies_over_1_mib_are_413_and_the_connection_stays_usable(api: Api) -> None:
    padded = care_contact(care_professional="x" * MAX_BODY)
    answer = api.post(CONTACTS, padded)
    assert answer.status_code == 413
    assert answer.json()["error"] == "payload_too_large"
    assert api.post(CONTACTS, care_contact()).status_code == 201


def test_export_over_http_matches_the_python_api(api: Api) -> None:
    api.post(CONTACTS, care_contact())
    exported = api.http.get(f"{api.base}/_sim/export", timeout=5).json()
    assert exported == api.sim.export()
    assert exported["referrals"][0]["care_contacts"][0]["client_reference"] == "cc-1"
    assert set(exported) == {"seed", "provider_code", "now", "referrals", "hostile"}
    assert set(exported["referrals"][0]) == {
        "referral",
        "care_contacts",
        "clinical_notes",
        "assessments",
        "status_events",
        "risk_alerts",
    }


def test_request_log_has_no_query_string_or_body(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="ehr_bridge.sim"):
        api.get("/referrals", referred_on_to="SECRET-QUERY")
        api.get(CONTACTS, client_reference="SECRET-REF")
        api.post(CONTACTS, care_contact("SECRET-BODY"))
        api.post(CONTACTS, care_contact("SECRET-BODY"))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "GET /api/v1/referrals -> 200" in text
    assert "POST /api/v1/referrals/{id}/care-contacts -> 409" in text
    assert "SECRET" not in text and "SR0000001" not in text and "?" not in text


def test_status_fault_answers_before_touching_state_with_retry_after(api: Api) -> None:
    api.sim.faults.add(Fault("status", method="POST", status=429, retry_after=2))
    refused = api.post(CONTACTS, care_contact())
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "2"
    assert api.get(CONTACTS).json() == {"items": []}
    assert api.post(CONTACTS, care_contact()).status_code == 201


def test_drop_fault_commits_then_closes_without_answer(api: Api) -> None:
    api.sim.faults.add(Fault("drop", path="/api/v1/referrals/{id}/care-contacts"))
    with pytest.raises(requests.ConnectionError):
        api.post(CONTACTS, care_contact("ambiguous"))
    found = api.get(CONTACTS, client_reference="ambiguous").json()["items"]
    assert len(found) == 1
    assert api.sim.faults.fired == 1


def test_delay_fault_commits_then_answers_late(api: Api) -> None:
    api.sim.faults.add(Fault("delay", method="POST", seconds=0.5))
    with pytest.raises(requests.Timeout):
        api.http.post(f"{api.base}/api/v1{CONTACTS}", json=care_contact(), timeout=0.1)
    assert len(api.get(CONTACTS).json()["items"]) == 1


def test_faults_only_fire_for_matching_requests_and_their_count(api: Api) -> None:
    api.sim.faults.add(Fault("status", method="POST", times=2))
    assert api.get("/referrals").status_code == 200
    assert [api.post(CONTACTS, care_contact()).status_code for _ in range(3)] == [503, 503, 201]


def test_concurrent_writes_with_one_reference_store_exactly_one(api: Api) -> None:
    statuses: list[int] = []

    def write() -> None:
        answer = requests.post(
            f"{api.base}/api/v1{CONTACTS}",
            json=care_contact("race"),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        )
        statuses.append(answer.status_code)

    threads = [threading.Thread(target=write) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] + [409] * 11


def test_a_stopped_simulator_stops_answering_kept_alive_clients() -> None:
    sim = TrustSimulator(referrals=1, token=TOKEN)
    api = Api(sim) if sim.start() else None
    assert api is not None and api.get("/referrals").status_code == 200
    sim.stop()
    with pytest.raises(requests.ConnectionError):
        api.get("/referrals")
    sim.stop()


def test_context_manager_starts_and_stops() -> None:
    with TrustSimulator(referrals=1) as sim:
        assert requests.get(f"{sim.base_url}/_sim/health", timeout=5).ok
        url = sim.api_url
    assert url.endswith("/api/v1")
    with pytest.raises(requests.ConnectionError):
        requests.get(url.replace("/api/v1", "/_sim/health"), timeout=5)
