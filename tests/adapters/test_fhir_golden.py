"""Golden files for ``mappings/fhir-r4.yaml``: hand-written FHIR in, hand-written results out.

Inbound, a trust's ServiceRequest + Patient record maps to the expected ReferralFacts and
then, through the domain, to valid UK Core resources. Outbound, each of our artefacts
maps to the expected trust resource, which must itself be valid FHIR once the adapter has
taken the client reference out of it.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.domain.referral import ProviderRef, build_referral_resources
from ehr_bridge.domain.validate import validate_resource
from ehr_bridge.mapping import Mapping, load_mapping
from support.fhir_schema import assert_valid_r4

ROOT = Path(__file__).resolve().parents[2] / "mappings"
GOLDEN = ROOT / "fhir-r4.golden"
INBOUND = sorted(GOLDEN.glob("*.facts.json"))
OUTBOUND = sorted(GOLDEN.glob("*.payload.json"))


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _input_for(expected: Path) -> Any:
    return _load(expected.with_name(f"{expected.name.split('.')[0]}.input.json"))


@pytest.fixture(scope="module")
def mapping() -> Mapping:
    return load_mapping(ROOT / "fhir-r4.yaml")


def test_golden_set_is_complete() -> None:
    inputs = {p.name.split(".")[0] for p in GOLDEN.glob("*.input.json")}
    assert inputs == {p.name.split(".")[0] for p in INBOUND + OUTBOUND}
    assert len(INBOUND) >= 4
    kinds = {_input_for(p)["kind"] for p in OUTBOUND}
    assert kinds == {"care_contact", "clinical_note", "assessment", "referral_status", "risk_alert"}


@pytest.mark.parametrize("expected", INBOUND, ids=lambda p: p.name.split(".")[0])
def test_inbound_golden(mapping: Mapping, expected: Path) -> None:
    record = _input_for(expected)
    facts = mapping.referral_facts(record)
    assert facts.model_dump(mode="json") == _load(expected)
    assert mapping.record_id(record) == record["service_request"]["id"]
    resources = build_referral_resources(
        "golden-fhir",
        ProviderRef("IESO01", "Provider"),
        facts,
        today=date(2026, 11, 26),
        allow_test_range=True,
    )
    assert_valid_r4(resources.patient)
    assert_valid_r4(resources.service_request)


@pytest.mark.parametrize("expected", OUTBOUND, ids=lambda p: p.name.split(".")[0])
def test_outbound_golden(mapping: Mapping, expected: Path) -> None:
    source = _input_for(expected)
    payload = mapping.outbound(source["kind"], source["resource"], source["context"])
    assert payload == _load(expected)
    for resource in _resources(payload):
        assert_valid_r4(resource)
        assert validate_resource(resource)["resourceType"] == resource["resourceType"]


def _resources(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """What the adapter writes: the payload less our reference; a risk's Flag and Task.

    For a risk alert the adapter fills the Flag's subject (required) with the referral's
    patient and points the Task at the Flag; both are filled here the same way.
    """
    if "flag" not in payload:
        return [{k: v for k, v in payload.items() if k != "client_reference"}]
    assert set(payload) == {"client_reference", "flag", "task"}
    flag = dict(payload["flag"], subject={"reference": "Patient/p-1"})
    task = dict(payload["task"], focus={"reference": "Flag/f-1"})
    return [flag, task]


def test_record_identity_reads_the_adapters_envelope(mapping: Mapping) -> None:
    record = _input_for(GOLDEN / "referral-03-untidy.facts.json")
    assert mapping.record_version(record) == "12"
    updated = mapping.record_updated_at(record)
    assert updated is not None and updated.isoformat() == "2026-07-01T08:00:00+00:00"


def test_a_record_without_its_patient_is_a_mapping_error_naming_the_field(
    mapping: Mapping,
) -> None:
    from ehr_bridge.errors import MappingError

    record = dict(_input_for(GOLDEN / "referral-01-gp.facts.json"), patient=None)
    with pytest.raises(MappingError) as caught:
        mapping.referral_facts(record)
    assert caught.value.field == "patient.local_id"
    assert caught.value.record == "SR0000101"
