"""Golden files: hand-written trust records and FHIR artefacts in, hand-written results out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from ehr_bridge.domain.facts import ReferralFacts
from ehr_bridge.mapping import Mapping, load_mapping

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "mappings" / "iaptus.yaml"
GOLDEN = ROOT / "mappings" / "iaptus.golden"

INBOUND = sorted(GOLDEN.glob("*.facts.json"))
OUTBOUND = sorted(GOLDEN.glob("*.payload.json"))


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _input_for(expected: Path) -> Any:
    stem = expected.name.split(".")[0]
    return _load(expected.with_name(f"{stem}.input.json"))


@pytest.fixture(scope="module")
def mapping() -> Mapping:
    return load_mapping(MAPPING)


def test_golden_set_is_complete() -> None:
    inputs = {p.name.split(".")[0] for p in GOLDEN.glob("*.input.json")}
    outputs = {p.name.split(".")[0] for p in INBOUND + OUTBOUND}
    assert inputs == outputs
    assert len(INBOUND) >= 5
    kinds = {_input_for(p)["kind"] for p in OUTBOUND}
    assert kinds == {"care_contact", "clinical_note", "assessment", "referral_status", "risk_alert"}


@pytest.mark.parametrize("expected", INBOUND, ids=lambda p: p.name.split(".")[0])
def test_inbound_golden(mapping: Mapping, expected: Path) -> None:
    facts = mapping.referral_facts(_input_for(expected))
    assert facts.model_dump(mode="json") == _load(expected)


@pytest.mark.parametrize("expected", INBOUND, ids=lambda p: p.name.split(".")[0])
def test_inbound_facts_round_trip(mapping: Mapping, expected: Path) -> None:
    facts = mapping.referral_facts(_input_for(expected))
    again = ReferralFacts.model_validate_json(facts.model_dump_json())
    assert again == facts


@pytest.mark.parametrize("expected", OUTBOUND, ids=lambda p: p.name.split(".")[0])
def test_outbound_golden(mapping: Mapping, expected: Path) -> None:
    source = _input_for(expected)
    payload = mapping.outbound(source["kind"], source["resource"], source["context"])
    assert payload == _load(expected)
    assert json.loads(json.dumps(payload)) == payload  # plain JSON, ready to send


@pytest.mark.parametrize("expected", OUTBOUND, ids=lambda p: p.name.split(".")[0])
def test_outbound_inputs_are_valid_fhir(expected: Path) -> None:
    resource = _input_for(expected)["resource"]
    if not resource:  # referral_status reads its context only
        return
    model = get_fhir_model_class(resource["resourceType"])
    assert model.model_validate(resource).model_dump(mode="json")["id"] == resource["id"]


def test_record_identity(mapping: Mapping) -> None:
    record = _input_for(GOLDEN / "referral-03-untidy-codes.facts.json")
    assert mapping.record_id(record) == "SR0000301"
    assert mapping.record_version(record) == "12"
    updated = mapping.record_updated_at(record)
    assert updated is not None
    assert updated.isoformat() == "2026-07-01T08:00:00+00:00"
