"""The ``fhir`` trust adapter: records it builds, writes it makes, errors it translates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses

from ehr_bridge.adapters.base import WriteItem
from ehr_bridge.adapters.fhir import CLIENT_REFERENCE_SYSTEM, FhirTrust, create_trust
from ehr_bridge.errors import ConnectionStopError, TerminalError, TransientError
from ehr_bridge.sim.faults import Fault
from ehr_bridge.sim.fhir_server import FhirServerSimulator

TOKEN = "trust-test-token"
NHS_NUMBER = "9990001235"


@pytest.fixture
def sim() -> Iterator[FhirServerSimulator]:
    with FhirServerSimulator.trust(seed=5, referrals=6, hostile=5, token=TOKEN) as server:
        yield server


def _adapter(tmp_path: Path, base_url: str, **options: Any) -> FhirTrust:
    (tmp_path / "token").write_text(TOKEN)
    settings = {"base_url": base_url, "token_file": "token", "read_attempts": 1, **options}
    return create_trust(settings, base_dir=tmp_path, key="trust", provider_code="IESO01")


def _all(adapter: FhirTrust, **kwargs: Any) -> list[dict[str, Any]]:
    records, page = [], None
    while True:
        result = adapter.fetch_referrals(updated_since=kwargs.get("since"), page=page)
        records += result.records
        if not result.next_page:
            return records
        page = result.next_page


def _encounter(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "VR"},
        "client_reference": "ignored-by-the-adapter",
        **extra,
    }


def _item(referral: str, reference: str = "ref-1", **payload: Any) -> WriteItem:
    return WriteItem("care_contact", referral, reference, payload or _encounter())


def test_each_record_is_a_service_request_with_its_patient(
    sim: FhirServerSimulator, tmp_path: Path
) -> None:
    records = _all(_adapter(tmp_path, sim.base_url, page_size=4))
    assert len(records) == 6 + 5
    for record in records:
        request = record["service_request"]
        assert record["id"] == request["id"]
        assert record["updated_at"] == request["meta"]["lastUpdated"]
        if sim.hostile_fields.get(request["id"]) == "patient.local_id":
            assert record["patient"] is None  # the server has no such Patient
        else:
            assert f"Patient/{record['patient']['id']}" == request["subject"]["reference"]


def test_patients_are_read_one_by_one_when_the_server_does_not_include_them(
    sim: FhirServerSimulator, tmp_path: Path
) -> None:
    records = _all(_adapter(tmp_path, sim.base_url, include_patient=False))
    with_patient = [r for r in records if r["patient"] is not None]
    assert len(with_patient) == len(records) - 1


def test_extra_search_parameters_narrow_the_listing(
    sim: FhirServerSimulator, tmp_path: Path
) -> None:
    first = _all(_adapter(tmp_path, sim.base_url))[0]["service_request"]
    sim.store.put({**first, "status": "revoked"})
    active = _all(_adapter(tmp_path, sim.base_url, search={"status": "active"}))
    assert first["id"] not in {r["id"] for r in active}
    assert len(active) == 10


def test_a_write_carries_our_reference_and_the_referrals_patient(
    sim: FhirServerSimulator, tmp_path: Path
) -> None:
    adapter = _adapter(tmp_path, sim.base_url)
    request = sim.store.all_of("ServiceRequest")[0]
    receipt = adapter.write(_item(request["id"]))
    again = adapter.write(_item(request["id"]))
    kind, _, encounter_id = receipt.trust_id.partition("/")
    stored = sim.store.read(kind, encounter_id)
    assert stored is not None and not receipt.already_present
    assert again.already_present and again.trust_id == receipt.trust_id
    assert stored["identifier"] == [{"system": CLIENT_REFERENCE_SYSTEM, "value": "ref-1"}]
    assert stored["subject"] == request["subject"]
    assert "client_reference" not in stored
    found = adapter.find(_item(request["id"]))
    assert found is not None and found.trust_id == receipt.trust_id
    assert adapter.find(_item(request["id"], reference="never-written")) is None


def test_a_lost_answer_is_ambiguous_and_the_retry_finds_the_first_write(
    sim: FhirServerSimulator, tmp_path: Path
) -> None:
    adapter = _adapter(tmp_path, sim.base_url, timeout_seconds=2)
    referral = sim.store.all_of("ServiceRequest")[0]["id"]
    sim.faults.add(Fault("drop", "POST", "/fhir"))
    with pytest.raises(TransientError) as caught:
        adapter.write(_item(referral))
    assert caught.value.ambiguous
    found = adapter.find(_item(referral))
    assert found is not None
    assert adapter.write(_item(referral)).trust_id == found.trust_id
    assert len(sim.store.all_of("Encounter")) == 1


def test_what_cannot_be_written_is_terminal_and_names_no_values(
    sim: FhirServerSimulator, tmp_path: Path
) -> None:
    adapter = _adapter(tmp_path, sim.base_url)
    referral = sim.store.all_of("ServiceRequest")[0]["id"]
    bad = _encounter(period={"start": NHS_NUMBER})
    with pytest.raises(TerminalError) as invalid:
        adapter.write(_item(referral, **bad))
    assert invalid.value.code == "fhir" and "period.start" in str(invalid.value)
    assert NHS_NUMBER not in str(invalid.value)
    with pytest.raises(TerminalError) as shapeless:
        adapter.write(_item(referral, date="2026-11-10"))
    assert shapeless.value.code == "mapping_shape"
    with pytest.raises(TerminalError) as unknown:
        adapter.write(_item("SR9999999"))
    assert unknown.value.code == "not_found"
    assert sim.store.all_of("Encounter") == []


def test_two_resources_with_our_reference_are_reported_not_guessed(
    sim: FhirServerSimulator, tmp_path: Path
) -> None:
    adapter = _adapter(tmp_path, sim.base_url)
    referral = sim.store.all_of("ServiceRequest")[0]["id"]
    ours = [{"system": CLIENT_REFERENCE_SYSTEM, "value": "ref-1"}]
    for copy_id in ("a", "b"):
        sim.store.put({**_encounter(identifier=ours), "id": copy_id})
    with pytest.raises(TerminalError) as caught:
        adapter.find(_item(referral))
    assert caught.value.code == "duplicate"


# --- error translation, without a server ------------------------------------------------
BASE = "https://fhir.trust.example/R4"


@responses.activate
def test_http_failures_become_the_error_tree(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, BASE)
    url = f"{BASE}/ServiceRequest"
    responses.get(url, status=401)
    with pytest.raises(ConnectionStopError):
        adapter.fetch_referrals(updated_since=None, page=None)
    responses.replace(responses.GET, url, status=429, headers={"Retry-After": "7"})
    with pytest.raises(TransientError) as limited:
        adapter.fetch_referrals(updated_since=None, page=None)
    assert limited.value.retry_after == 7 and not limited.value.ambiguous
    responses.replace(responses.GET, url, body="<html>proxy error</html>", status=200)
    with pytest.raises(TransientError):
        adapter.fetch_referrals(updated_since=None, page=None)
    responses.post(BASE, status=503)
    with pytest.raises(TransientError) as lost:
        adapter.write(_item("SR1", **_encounter(subject={"reference": "Patient/1"})))
    assert lost.value.ambiguous


@responses.activate
def test_an_operation_outcome_is_reported_by_code_and_path_only(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, BASE)
    diagnostics = f"Patient {NHS_NUMBER} (Alex Example) failed validation"
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": diagnostics,
                "expression": [f"Encounter.subject.where(identifier.value='{NHS_NUMBER}')"],
            }
        ],
    }
    responses.post(BASE, json=outcome, status=422)
    with pytest.raises(TerminalError) as caught:
        adapter.write(_item("SR1", **_encounter(subject={"reference": "Patient/1"})))
    message = str(caught.value)
    assert "HTTP 422 (issue invalid)" in message and caught.value.code == "http_422"
    assert NHS_NUMBER not in message and "Alex" not in message


@responses.activate
def test_the_search_asks_for_our_referrals_in_cursor_order(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    responses.get(f"{BASE}/ServiceRequest", json={"resourceType": "Bundle", "type": "searchset"})
    _adapter(tmp_path, BASE, page_size=25).fetch_referrals(
        updated_since=datetime(2026, 11, 1, 9, tzinfo=UTC), page=None
    )
    _adapter(tmp_path, BASE, performer="Organization/ieso").fetch_referrals(
        updated_since=None, page=None
    )
    first, second = (c.request.params for c in responses.calls)
    assert first == {
        "performer:identifier": "https://fhir.nhs.uk/Id/ods-organization-code|IESO01",
        "_lastUpdated": "ge2026-11-01T09:00:00.000Z",
        "_sort": "_lastUpdated",
        "_count": "25",
        "_include": "ServiceRequest:subject",
    }
    assert second["performer"] == "Organization/ieso" and "_lastUpdated" not in second


@responses.activate
def test_a_next_link_to_another_host_is_never_followed(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, BASE)
    for elsewhere in ("https://evil.example/R4/ServiceRequest?p=2", f"{BASE}-other/x?p=2"):
        with pytest.raises(ConnectionStopError, match="not under base_url"):
            adapter.fetch_referrals(updated_since=None, page=elsewhere)
    assert len(responses.calls) == 0
    assert TOKEN not in repr(adapter)


def test_the_token_stays_out_of_the_record_and_repr(
    sim: FhirServerSimulator, tmp_path: Path
) -> None:
    adapter = _adapter(tmp_path, sim.base_url)
    assert TOKEN not in repr(adapter)
    assert TOKEN not in json.dumps(_all(adapter))


@responses.activate
def test_a_relative_next_link_is_read_against_the_base(tmp_path: Path) -> None:
    responses.get(f"{BASE}/ServiceRequest", json={"resourceType": "Bundle", "type": "searchset"})
    page = _adapter(tmp_path, BASE).fetch_referrals(
        updated_since=None, page="ServiceRequest?_page=2"
    )
    assert page.records == [] and page.next_page is None
    assert responses.calls[0].request.url == f"{BASE}/ServiceRequest?_page=2"
