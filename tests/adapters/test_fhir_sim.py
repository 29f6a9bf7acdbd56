"""The FHIR server simulator, over HTTP: search, paging, transactions, messages, faults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ehr_bridge.sim.faults import Fault
from ehr_bridge.sim.fhir_seed import HOSTILE_KINDS, ODS
from ehr_bridge.sim.fhir_server import FhirServerSimulator

TOKEN = "sim-test-token"
OURS = f"{ODS}|IESO01"


class Client:
    def __init__(self, sim: FhirServerSimulator) -> None:
        self.base = sim.base_url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {TOKEN}"

    def get(self, path: str, **params: str) -> requests.Response:
        return self.http.get(f"{self.base}/{path}", params=params, timeout=5)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.http.post(f"{self.base}/{path}".rstrip("/"), json=body, timeout=5)

    def put(self, path: str, body: Any) -> requests.Response:
        return self.http.put(f"{self.base}/{path}", json=body, timeout=5)


@pytest.fixture
def trust() -> Iterator[FhirServerSimulator]:
    with FhirServerSimulator.trust(seed=11, referrals=8, hostile=5, token=TOKEN) as sim:
        yield sim


@pytest.fixture
def empty() -> Iterator[FhirServerSimulator]:
    with FhirServerSimulator(token=TOKEN) as sim:
        yield sim


def _ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == mode]


def _issue(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return dict(body["issue"][0])


def _encounter(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Encounter", "status": "finished", "class": {"code": "VR"}, **extra}


def test_seeded_trust_holds_our_referrals_others_and_the_hostile_ones(
    trust: FhirServerSimulator,
) -> None:
    requests_ = trust.store.all_of("ServiceRequest")
    ours = [r for r in requests_ if r["performer"][0]["identifier"]["value"] == "IESO01"]
    assert len(ours) == 8 + 5 and len(requests_) > len(ours)
    expected = {"patient.nhs_number", "patient.birth_date", "source_of_referral"}
    expected |= {"received_date", "patient.local_id"}
    assert sorted(trust.hostile_fields.values()) == sorted(expected)
    assert len(HOSTILE_KINDS) == 5


def test_search_filters_includes_and_pages_by_last_updated(trust: FhirServerSimulator) -> None:
    client = Client(trust)
    first = client.get(
        "ServiceRequest",
        **{"performer:identifier": OURS, "_include": "ServiceRequest:subject", "_count": "5"},
    ).json()
    assert first["total"] == 13 and len(_ids(first)) == 5
    patients = {trust.store.read("ServiceRequest", i)["subject"]["reference"] for i in _ids(first)}
    included = {f"Patient/{i}" for i in _ids(first, "include")}
    assert included == {p for p in patients if trust.store.read("Patient", p[8:]) is not None}
    seen, page = _ids(first), first
    while link := [x["url"] for x in page["link"] if x["relation"] == "next"]:
        page = client.http.get(link[0], timeout=5).json()
        seen += _ids(page)
    assert len(seen) == len(set(seen)) == 13
    stamps = [trust.store.read("ServiceRequest", i)["meta"]["lastUpdated"] for i in seen]
    assert stamps == sorted(stamps)


def test_last_updated_prefixes_are_closed_and_open_as_specified(
    trust: FhirServerSimulator,
) -> None:
    client = Client(trust)
    stamps = sorted(r["meta"]["lastUpdated"] for r in trust.store.all_of("ServiceRequest"))
    middle = stamps[len(stamps) // 2]
    ge = client.get("ServiceRequest", _lastUpdated=f"ge{middle}").json()["total"]
    gt = client.get("ServiceRequest", _lastUpdated=f"gt{middle}").json()["total"]
    assert ge == sum(1 for s in stamps if s >= middle) == gt + 1
    window = client.http.get(
        f"{client.base}/ServiceRequest",
        params=[("_lastUpdated", f"ge{stamps[1]}"), ("_lastUpdated", f"lt{stamps[3]}")],
        timeout=5,
    ).json()
    assert window["total"] == 2


def test_a_resource_changed_while_paging_is_served_again_never_lost(
    trust: FhirServerSimulator,
) -> None:
    client = Client(trust)
    first = client.get("ServiceRequest", **{"performer:identifier": OURS, "_count": "4"}).json()
    moved = trust.store.read("ServiceRequest", _ids(first)[0])
    assert moved is not None
    trust.store.put({**moved, "status": "revoked"})
    seen, page = _ids(first), first
    while link := [x["url"] for x in page["link"] if x["relation"] == "next"]:
        page = client.http.get(link[0], timeout=5).json()
        seen += _ids(page)
    assert set(seen) >= {r for r in _ids(first)} and seen[-1] == moved["id"]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"bogus": "1"}, "bogus"),
        ({"_sort": "-_lastUpdated"}, "_sort"),
        ({"_count": "0"}, "_count"),
        ({"_include": "ServiceRequest:requester"}, "_include"),
        ({"_lastUpdated": "ge2026-13-01T00:00:00Z"}, "_lastUpdated"),
        ({"_page": "not-a-token"}, "_page"),
    ],
)
def test_a_search_the_server_cannot_honour_is_refused_naming_the_parameter(
    trust: FhirServerSimulator, params: dict[str, str], parameter: str
) -> None:
    response = Client(trust).get("ServiceRequest", **params)
    assert response.status_code == 400
    assert _issue(response)["expression"] == [parameter]


def test_conditional_create_answers_the_existing_resource(empty: FhirServerSimulator) -> None:
    client = Client(empty)
    entry = {
        "fullUrl": "urn:uuid:6f1c0c57-55a4-4a5e-9a1b-1b0bb0d0a001",
        "resource": _encounter(identifier=[{"system": "urn:x", "value": "ref-1"}]),
        "request": {"method": "POST", "url": "Encounter", "ifNoneExist": "identifier=urn:x|ref-1"},
    }
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    created = client.post("", bundle).json()["entry"][0]["response"]
    again = client.post("", bundle).json()["entry"][0]["response"]
    assert created["status"] == "201 Created" and again["status"] == "200 OK"
    assert again["location"] == created["location"]
    assert len(empty.store.all_of("Encounter")) == 1
    empty.store.put({**empty.store.all_of("Encounter")[0], "id": "copy"})
    response = client.post("", bundle)
    assert response.status_code == 412


def test_a_transaction_is_all_or_nothing_and_links_its_entries(
    empty: FhirServerSimulator,
) -> None:
    client = Client(empty)
    patient = {
        "fullUrl": "urn:uuid:0d5e7c3c-0a3e-4e0b-8d6d-1d7b6b2b0001",
        "resource": {"resourceType": "Patient", "gender": "female"},
        "request": {"method": "POST", "url": "Patient"},
    }
    good = {
        "resource": _encounter(subject={"reference": patient["fullUrl"]}),
        "request": {"method": "POST", "url": "Encounter"},
    }
    bad = {
        "resource": {"resourceType": "Encounter", "status": "not-a-status"},
        "request": {"method": "POST", "url": "Encounter"},
    }
    failed = client.post(
        "", {"resourceType": "Bundle", "type": "transaction", "entry": [patient, good, bad]}
    )
    assert failed.status_code == 400
    assert _issue(failed)["expression"][0].startswith("Bundle.entry[2].resource")
    assert empty.store.all_of("Patient") == [] and empty.store.all_of("Encounter") == []
    done = client.post(
        "", {"resourceType": "Bundle", "type": "transaction", "entry": [patient, good]}
    )
    assert done.status_code == 200
    (encounter,) = empty.store.all_of("Encounter")
    (stored_patient,) = empty.store.all_of("Patient")
    assert encounter["subject"]["reference"] == f"Patient/{stored_patient['id']}"


def test_an_unchanged_put_is_a_no_op_and_a_change_is_a_new_version(
    empty: FhirServerSimulator,
) -> None:
    client = Client(empty)
    patient = {"resourceType": "Patient", "id": "pt-1", "gender": "male"}
    first = client.put("Patient/pt-1", patient)
    same = client.put("Patient/pt-1", patient)
    changed = client.put("Patient/pt-1", {**patient, "gender": "other"})
    assert (first.status_code, same.status_code, changed.status_code) == (201, 200, 200)
    assert same.json()["meta"] == first.json()["meta"]
    assert changed.json()["meta"]["versionId"] == "2"
    assert client.get("Patient/pt-1").json()["gender"] == "other"
    assert client.get("Patient/nobody").status_code == 404
    assert client.put("Patient/pt-2", patient).status_code == 400  # id differs from the URL


def _message(header_id: str, event: str = "servicerequest-request") -> dict[str, Any]:
    request = {
        "resourceType": "ServiceRequest",
        "id": "sr-9",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "urn:uuid:4b5d1f62-9f1e-4f7e-9a55-3f8e0f1d0009"},
    }
    patient = {"resourceType": "Patient", "id": "4b5d1f62-9f1e-4f7e-9a55-3f8e0f1d0009"}
    header = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "eventCoding": {
            "system": "https://fhir.nhs.uk/CodeSystem/message-events-bars",
            "code": event,
        },
        "source": {"endpoint": "urn:test"},
        "focus": [{"reference": "urn:test:sr-9"}],
    }
    return {
        "resourceType": "Bundle",
        "type": "message",
        "entry": [
            {"fullUrl": "urn:uuid:5e0c2a51-8d1e-4d7e-9a55-3f8e0f1d0001", "resource": header},
            {"fullUrl": "urn:test:sr-9", "resource": request},
            {"fullUrl": f"urn:uuid:{patient['id']}", "resource": patient},
        ],
    }


def test_process_message_stores_the_referral_once(empty: FhirServerSimulator) -> None:
    client = Client(empty)
    first = client.post("$process-message", _message("msg-1"))
    again = client.post("$process-message", _message("msg-1"))
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    header = first.json()["entry"][0]["resource"]
    assert header["response"] == {"identifier": "msg-1", "code": "ok"}
    stored = empty.store.read("ServiceRequest", "sr-9")
    assert stored is not None and stored["subject"]["reference"].startswith("Patient/4b5d1f62")
    assert len(empty.store.messages) == 1
    refused = client.post("$process-message", _message("msg-2", event="booking-request"))
    assert refused.status_code == 400 and _issue(refused)["code"] == "not-supported"


def test_authentication_health_and_unknown_paths(empty: FhirServerSimulator) -> None:
    anonymous = requests.get(f"{empty.base_url}/Patient", timeout=5)
    assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["WWW-Authenticate"]
    health = requests.get(empty.base_url.replace("/fhir", "/_sim/health"), timeout=5)
    assert health.json() == {"ok": True}
    client = Client(empty)
    assert client.get("not-a-type/x/y").status_code == 404
    assert client.http.delete(f"{empty.base_url}/Patient/x", timeout=5).status_code == 405
    assert client.get("metadata").json()["fhirVersion"] == "4.0.1"
    with FhirServerSimulator(token=None) as open_server:
        assert requests.get(f"{open_server.base_url}/Patient", timeout=5).status_code == 200


def test_a_dropped_answer_still_commits(empty: FhirServerSimulator) -> None:
    empty.faults.add(Fault("drop", "POST", "/fhir"))
    entry = {"resource": _encounter(), "request": {"method": "POST", "url": "Encounter"}}
    with pytest.raises(requests.ConnectionError):
        Client(empty).post("", {"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
    assert len(empty.store.all_of("Encounter")) == 1
    assert empty.faults.fired == 1


def test_request_logs_name_the_template_never_the_query(
    trust: FhirServerSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    patient = trust.store.all_of("Patient")[0]
    nhs_number = patient["identifier"][0]["value"]
    with caplog.at_level("DEBUG", logger="ehr_bridge.sim"):
        client = Client(trust)
        client.get("Patient", identifier=f"https://fhir.nhs.uk/Id/nhs-number|{nhs_number}")
        client.get(f"Patient/{patient['id']}")
    assert "GET /fhir/Patient -> 200" in caplog.text
    assert "GET /fhir/Patient/{id} -> 200" in caplog.text
    assert nhs_number not in caplog.text and patient["id"] not in caplog.text
