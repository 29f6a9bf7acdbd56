"""The ``fhir-provider`` adapter: deliveries to the platform's FHIR server, and collecting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import responses

from ehr_bridge.adapters.fhir import FhirProvider, create_provider
from ehr_bridge.domain.facts import PatientFacts, ReferralFacts
from ehr_bridge.domain.referral import ProviderRef, build_referral_resources, referral_bundle
from ehr_bridge.errors import ConfigError, TerminalError, TransientError
from ehr_bridge.sim.fhir_server import FhirServerSimulator

TOKEN = "provider-test-token"


@pytest.fixture
def sim() -> Iterator[FhirServerSimulator]:
    with FhirServerSimulator(token=TOKEN) as server:
        yield server


def _provider(tmp_path: Path, base_url: str, **options: Any) -> FhirProvider:
    (tmp_path / "token").write_text(TOKEN)
    settings = {
        "base_url": base_url,
        "token_file": "token",
        "state_file": "state/marker.json",
        "read_attempts": 1,
        **options,
    }
    return create_provider(settings, base_dir=tmp_path, key="provider", provider_code="IESO01")


def _referral(status: str = "active", phone: str | None = None) -> tuple[str, dict[str, Any]]:
    facts = ReferralFacts(
        trust_referral_id="SR0000001",
        received_date=date(2026, 11, 2),
        source_of_referral="B1",
        referred_on_to="IESO01",
        status=status,
        patient=PatientFacts(local_id="P1", nhs_number="9990001235", phone=phone),
    )
    resources = build_referral_resources(
        "conn", ProviderRef("IESO01", "Provider"), facts, allow_test_range=True
    )
    return resources.service_request["id"], referral_bundle(resources)


def _session(bundle_id: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "id": bundle_id, "type": "collection", **extra}


def test_delivery_puts_the_referral_under_our_ids_and_repeats_are_no_ops(
    sim: FhirServerSimulator, tmp_path: Path
) -> None:
    provider = _provider(tmp_path, sim.base_url)
    sr_id, bundle = _referral()
    provider.deliver_referral(sr_id, bundle)
    provider.deliver_referral(sr_id, bundle)
    request = sim.store.read("ServiceRequest", sr_id)
    assert request is not None and request["meta"]["versionId"] == "1"
    patient = sim.store.read("Patient", request["subject"]["reference"].split("/")[1])
    assert patient is not None and patient["meta"]["versionId"] == "1"
    provider.deliver_referral(sr_id, _referral(status="revoked")[1])
    request = sim.store.read("ServiceRequest", sr_id)
    assert request is not None and (request["status"], request["meta"]["versionId"]) == (
        "revoked",
        "2",
    )


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda b: b["entry"].pop(), "not_a_referral"),
        (lambda b: b["entry"][0]["resource"].update(id="../../Patient"), "unsafe_id"),
        (lambda b: b.update(entry=[]), "not_a_referral"),
    ],
)
def test_a_bundle_that_is_not_a_referral_is_refused_for_good(
    sim: FhirServerSimulator, tmp_path: Path, mutate: Any, code: str
) -> None:
    sr_id, bundle = _referral()
    mutate(bundle)
    with pytest.raises(TerminalError) as caught:
        _provider(tmp_path, sim.base_url).deliver_referral(sr_id, bundle)
    assert caught.value.code == code
    assert sim.store.all_of("Patient") == [] and sim.store.all_of("ServiceRequest") == []


def test_message_delivery_sends_one_message_per_version_of_a_referral(
    sim: FhirServerSimulator, tmp_path: Path
) -> None:
    provider = _provider(tmp_path, sim.base_url, delivery="message")
    sr_id, bundle = _referral()
    provider.deliver_referral(sr_id, bundle)
    provider.deliver_referral(sr_id, bundle)  # the same message again: answered, not re-applied
    assert len(sim.store.messages) == 1
    provider.deliver_referral(sr_id, _referral(phone="07700 900111")[1])
    assert len(sim.store.messages) == 2
    header = sim.store.messages[0]["entry"][0]["resource"]
    assert header["eventCoding"]["code"] == "servicerequest-request"
    assert header["focus"] == [{"reference": f"urn:uuid:{sr_id}"}]
    stored = sim.store.read("ServiceRequest", sr_id)
    assert stored is not None and stored["meta"]["versionId"] == "1"


@responses.activate
def test_message_headers_and_negative_answers(tmp_path: Path) -> None:
    base = "https://platform.example/fhir"
    provider = _provider(tmp_path, base, delivery="message", target_identifier="ABC123")
    sr_id, bundle = _referral()

    def answer(code: str) -> dict[str, Any]:
        header = {"resourceType": "MessageHeader", "response": {"identifier": "x", "code": code}}
        return {"resourceType": "Bundle", "type": "message", "entry": [{"resource": header}]}

    responses.post(f"{base}/$process-message", json=answer("ok"))
    provider.deliver_referral(sr_id, bundle)
    sent = responses.calls[0].request
    message = json.loads(sent.body or b"{}")
    assert sent.headers["X-Correlation-Id"] == message["entry"][0]["resource"]["id"]
    assert sent.headers["NHSD-Target-Identifier"] == "ABC123"
    responses.replace(responses.POST, f"{base}/$process-message", json=answer("transient-error"))
    with pytest.raises(TransientError):
        provider.deliver_referral(sr_id, bundle)
    responses.replace(responses.POST, f"{base}/$process-message", json=answer("fatal-error"))
    with pytest.raises(TerminalError) as caught:
        provider.deliver_referral(sr_id, bundle)
    assert caught.value.code == "nak"
    retry_ids = {c.request.headers["X-Request-Id"] for c in responses.calls}
    assert len(retry_ids) == 3  # a fresh request id per attempt


def test_submissions_are_offered_in_order_until_acknowledged_across_restarts(
    sim: FhirServerSimulator, tmp_path: Path
) -> None:
    for n in range(5):
        sim.store.put(_session(f"s{n}", meta={"tag": [{"system": "urn:t", "code": "x"}]}))
    provider = _provider(tmp_path, sim.base_url, page_size=2)
    offered = list(provider.pending_submissions())
    assert [s.bundle["id"] for s in offered] == ["s0", "s1", "s2", "s3", "s4"]
    assert offered[0].bundle["meta"] == {"tag": [{"system": "urn:t", "code": "x"}]}
    for submission in offered[:3]:
        provider.acknowledge(submission.handle)
    provider.acknowledge(offered[1].handle)  # late repeat: no step back
    restarted = _provider(tmp_path, sim.base_url, page_size=2)
    assert [s.bundle["id"] for s in restarted.pending_submissions()] == ["s3", "s4"]
    changed = sim.store.read("Bundle", "s1")
    assert changed is not None
    sim.store.put({**changed, "timestamp": "2026-11-26T10:00:00Z"})
    again = [s.bundle["id"] for s in restarted.pending_submissions()]
    assert again == ["s3", "s4", "s1"]


def test_submissions_sharing_one_instant_are_told_apart(
    sim: FhirServerSimulator, tmp_path: Path
) -> None:
    same = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    for name in ("a", "b", "c"):
        sim.store.put(_session(name), when=same)
    provider = _provider(tmp_path, sim.base_url)
    first = next(iter(provider.pending_submissions()))
    provider.acknowledge(first.handle)
    assert [s.bundle["id"] for s in provider.pending_submissions()] == ["b", "c"]
    marker = json.loads((tmp_path / "state" / "marker.json").read_text())
    assert marker == {"version": 1, "last_updated": "2026-11-20T10:00:00Z", "ids": ["a"]}


def test_an_unchanged_offer_is_byte_for_byte_the_same(
    sim: FhirServerSimulator, tmp_path: Path
) -> None:
    sim.store.put(_session("s0", entry=[]))
    provider = _provider(tmp_path, sim.base_url)
    first = list(provider.pending_submissions())
    second = list(provider.pending_submissions())
    assert first == second  # collect's content hash recognises a re-offer after a crash


def test_only_tagged_bundles_are_collected_when_a_tag_is_set(
    sim: FhirServerSimulator, tmp_path: Path
) -> None:
    sim.store.put(_session("mine", meta={"tag": [{"system": "urn:p", "code": "sessions"}]}))
    sim.store.put(_session("other"))
    provider = _provider(tmp_path, sim.base_url, submission_tag="urn:p|sessions")
    assert [s.bundle["id"] for s in provider.pending_submissions()] == ["mine"]


def test_a_bad_handle_or_marker_is_reported(sim: FhirServerSimulator, tmp_path: Path) -> None:
    provider = _provider(tmp_path, sim.base_url)
    for handle in (
        "Bundle/x",
        "Patient/x@2026-11-20T10:00:00Z",
        "Bundle/../x@2026-11-20T10:00:00Z",
    ):
        with pytest.raises(TerminalError):
            provider.acknowledge(handle)
    (tmp_path / "state" / "marker.json").write_text("{not json")
    with pytest.raises(ConfigError, match="delete it"):
        list(provider.pending_submissions())
