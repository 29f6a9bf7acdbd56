"""The contract every adapter passes, parametrised over all registered adapters.

A gap is declared once, as a missing capability in the adapter's spec; the tests that need
a capability say so with ``requires``, never with scattered skips.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from harnesses import PROVIDER_HARNESSES, TRUST_HARNESSES, ProviderCase, TrustCase

from ehr_bridge.adapters.base import (
    ProviderPort,
    ReportsCapabilities,
    RiskAcknowledgement,
    RiskAcknowledger,
    TrustReader,
    TrustSource,
    TrustUpdater,
    TrustWriter,
    WriteItem,
)
from ehr_bridge.adapters.registry import capabilities_of, specs

WRITE_KINDS = ("care_contact", "clinical_note", "assessment")


@pytest.fixture(params=sorted(TRUST_HARNESSES))
def trust(request: pytest.FixtureRequest, tmp_path: Path) -> TrustCase:
    with TRUST_HARNESSES[request.param](tmp_path) as case:
        case.name = request.param
        yield case


@pytest.fixture(params=sorted(PROVIDER_HARNESSES))
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> ProviderCase:
    with PROVIDER_HARNESSES[request.param](tmp_path) as case:
        yield case


def requires(case: TrustCase, capability: str) -> None:
    if capability not in case.capabilities:
        pytest.skip(f"adapter does not declare {capability}")


def test_every_registered_adapter_has_a_harness() -> None:
    for name, spec in specs().items():
        if "trust" in spec.roles:
            assert name in TRUST_HARNESSES, f"trust adapter {name} has no contract harness"
        if "provider" in spec.roles:
            assert name in PROVIDER_HARNESSES, f"provider adapter {name} has no contract harness"


def _all_records(source: TrustSource, since: datetime | None = None) -> list[dict]:
    records, page = [], None
    for _ in range(1000):
        result = source.fetch_referrals(updated_since=since, page=page)
        records.extend(result.records)
        if not result.next_page:
            return records
        page = result.next_page
    raise AssertionError("paging never ended")


def test_source_pages_through_every_referral_once(trust: TrustCase) -> None:
    assert isinstance(trust.source, TrustSource)
    records = _all_records(trust.source)
    ids = [trust.record_id(r) for r in records]
    assert sorted(ids) == sorted(trust.expected_ids)


def test_source_updated_since_is_a_closed_start(trust: TrustCase) -> None:
    requires(trust, "updated_since")
    records = _all_records(trust.source)
    stamps = sorted(trust.updated_at(r) for r in records)
    middle = stamps[len(stamps) // 2]
    later = _all_records(trust.source, since=middle)
    assert all(trust.updated_at(r) >= middle for r in later)
    assert len({trust.record_id(r) for r in later}) == sum(1 for s in stamps if s >= middle)
    assert _all_records(trust.source, since=datetime(2100, 1, 1, tzinfo=UTC)) == []


@pytest.mark.parametrize("kind", WRITE_KINDS)
def test_writer_write_then_find(trust: TrustCase, kind: str) -> None:
    requires(trust, "find_by_reference")
    requires(trust, f"write:{kind}")
    assert isinstance(trust.writer, TrustWriter)
    item = trust.sample_item(kind, f"contract-{kind}")
    assert trust.writer.find(item) is None
    receipt = trust.writer.write(item)
    assert receipt.trust_id
    found = trust.writer.find(item)
    assert found is not None and found.trust_id == receipt.trust_id


@pytest.mark.parametrize("kind", WRITE_KINDS)
def test_writer_second_write_of_a_reference_is_not_a_duplicate(trust: TrustCase, kind: str) -> None:
    requires(trust, f"write:{kind}")
    assert trust.writer is not None
    item = trust.sample_item(kind, f"contract-twice-{kind}")
    first = trust.writer.write(item)
    second = trust.writer.write(item)
    assert second.trust_id == first.trust_id and second.already_present


def test_writer_status_update(trust: TrustCase) -> None:
    requires(trust, "write:referral_status")
    assert trust.writer is not None
    receipt = trust.writer.write(trust.sample_item("referral_status", "contract-status"))
    assert receipt.trust_id


def test_writer_risk_alert_is_written_once_and_found(trust: TrustCase) -> None:
    requires(trust, "write:risk_alert")
    assert trust.writer is not None
    item = trust.sample_item("risk_alert", "contract-risk")
    if "find_by_reference" in trust.capabilities:
        assert trust.writer.find(item) is None
    first = trust.writer.write(item)
    assert first.trust_id and not first.already_present
    second = trust.writer.write(item)
    assert second.trust_id == first.trust_id and second.already_present
    if "find_by_reference" in trust.capabilities:
        found = trust.writer.find(item)
        assert found is not None and found.trust_id == first.trust_id


def test_risk_alert_acknowledgement_is_none_until_the_trust_marks_it(trust: TrustCase) -> None:
    requires(trust, "read_acknowledgement")
    requires(trust, "write:risk_alert")
    assert isinstance(trust.writer, RiskAcknowledger) and trust.acknowledge is not None
    item = trust.sample_item("risk_alert", "contract-risk-ack")
    receipt = trust.writer.write(item)
    assert trust.writer.acknowledgement(item, receipt.trust_id) is None
    trust.acknowledge(item, receipt.trust_id)
    seen = trust.writer.acknowledgement(item, receipt.trust_id)
    assert isinstance(seen, RiskAcknowledgement)
    assert seen.by == "duty.clinician1" and seen.at.utcoffset() is not None
    assert trust.writer.acknowledgement(item, receipt.trust_id) == seen  # reading twice: same


def test_only_an_adapter_that_writes_risk_alerts_reads_their_acknowledgement() -> None:
    declared = {n for n, s in specs().items() if "read_acknowledgement" in s.capabilities}
    assert declared == {"fhir", "iaptus"}
    assert all("write:risk_alert" in specs()[name].capabilities for name in declared)


def _referral_bundle(status: str) -> tuple[str, dict]:
    """A real delivery: the Patient + ServiceRequest bundle deliver builds (sr-1, pt-1)."""
    patient = {"resourceType": "Patient", "id": "pt-1", "gender": "unknown"}
    request = {
        "resourceType": "ServiceRequest",
        "id": "sr-1",
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/pt-1"},
    }
    entries = [{"fullUrl": f"urn:ehr-bridge:{r['id']}", "resource": r} for r in (patient, request)]
    return "sr-1", {"resourceType": "Bundle", "id": "sr-1", "type": "collection", "entry": entries}


def test_provider_delivery_replaces_on_redelivery(provider: ProviderCase) -> None:
    assert isinstance(provider.provider, ProviderPort)
    sr_id, bundle = _referral_bundle("active")
    provider.provider.deliver_referral(sr_id, bundle)
    provider.provider.deliver_referral(sr_id, _referral_bundle("revoked")[1])
    delivered = provider.delivered()
    assert list(delivered) == [sr_id]
    requests = [
        e["resource"]
        for e in delivered[sr_id]["entry"]
        if e["resource"]["resourceType"] == "ServiceRequest"
    ]
    assert [r["status"] for r in requests] == ["revoked"]


def test_provider_submissions_are_offered_until_acknowledged(provider: ProviderCase) -> None:
    for n in range(3):
        provider.submit(f"b{n}", {"resourceType": "Bundle", "id": f"b{n}", "type": "collection"})
    offered = list(provider.provider.pending_submissions())
    assert [s.bundle["id"] for s in offered] == ["b0", "b1", "b2"]
    provider.provider.acknowledge(offered[0].handle)
    provider.provider.acknowledge(offered[0].handle)  # twice is harmless
    assert [s.bundle["id"] for s in provider.provider.pending_submissions()] == ["b1", "b2"]


def test_reader_lists_what_was_written(trust: TrustCase) -> None:
    requires(trust, "read_items")
    requires(trust, "write:clinical_note")
    assert isinstance(trust.source, TrustReader) and trust.writer is not None
    item = trust.sample_item("clinical_note", "contract-read")
    receipt = trust.writer.write(item)
    listed = trust.source.list_items(item.trust_referral_id, "clinical_note")
    assert [i.trust_id for i in listed if i.client_reference == "contract-read"] == [
        receipt.trust_id
    ]


def test_reader_fetches_one_referral_or_none(trust: TrustCase) -> None:
    requires(trust, "fetch_referral")
    assert isinstance(trust.source, TrustReader)
    wanted = sorted(trust.expected_ids)[0]
    record = trust.source.fetch_referral(wanted)
    assert record is not None and trust.record_id(record) == wanted
    assert trust.source.fetch_referral("NO-SUCH-REFERRAL") is None


def test_updater_replaces_an_item_in_place(trust: TrustCase) -> None:
    requires(trust, "update_items")
    requires(trust, "read_items")
    assert isinstance(trust.writer, TrustUpdater) and isinstance(trust.source, TrustReader)
    item = trust.sample_item("clinical_note", "contract-update")
    receipt = trust.writer.write(item)
    trust.writer.update(item, receipt.trust_id)
    listed = trust.source.list_items(item.trust_referral_id, "clinical_note")
    again = [i for i in listed if i.client_reference == "contract-update"]
    assert [i.trust_id for i in again] == [receipt.trust_id]
    assert differing(item, again[0].fields) == []


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def differing(item: WriteItem, fields: dict[str, Any]) -> list[str]:
    """The payload fields a read-back shows otherwise: what reconcile would call changed."""
    return sorted(
        name
        for name, value in item.payload.items()
        if name != "client_reference" and _canonical(value) != _canonical(fields.get(name))
    )


@pytest.mark.parametrize("kind", [*WRITE_KINDS, "referral_status"])
def test_reader_reads_each_kind_back_in_the_payloads_shape(trust: TrustCase, kind: str) -> None:
    requires(trust, "read_items")
    requires(trust, f"write:{kind}")
    assert isinstance(trust.source, TrustReader) and trust.writer is not None
    item = trust.sample_item(kind, f"contract-shape-{kind}")
    receipt = trust.writer.write(item)
    listed = trust.source.list_items(item.trust_referral_id, kind)
    (mine,) = [i for i in listed if i.client_reference == item.client_reference]
    assert mine.trust_id == receipt.trust_id
    assert differing(item, mine.fields) == []  # reconcile would find it in sync


def test_capabilities_are_the_specs_and_what_its_mapping_gives(trust: TrustCase) -> None:
    spec = specs().get(trust.name)
    if spec is None:
        pytest.skip("the test fake is not a registered adapter")
    reported = trust.source.capabilities if isinstance(trust.source, ReportsCapabilities) else None
    if spec.mapping_capabilities:
        assert reported is not None, "an adapter with mapping_capabilities must report its own"
    assert trust.capabilities == capabilities_of(spec, trust.source)
    assert spec.capabilities <= trust.capabilities <= spec.capabilities | spec.mapping_capabilities
