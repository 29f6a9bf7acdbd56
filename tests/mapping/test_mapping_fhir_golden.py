"""Golden files, trust record in -> FHIR out: mapping and domain together, as pull runs them.

The expected ``*.fhir.json`` files were produced once, read line by line against UK Core
and the domain brief, and committed; a change to either the mapping or the builders that
alters the FHIR shows up here as a diff to review.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from ehr_bridge.domain.referral import ProviderRef, build_referral_resources, referral_bundle
from ehr_bridge.domain.validate import validate_resource
from ehr_bridge.mapping import load_mapping
from support.fhir_schema import assert_valid_r4

GOLDEN = Path(__file__).resolve().parents[2] / "mappings" / "iaptus.golden"
CASES = sorted(p.name.removesuffix(".fhir.json") for p in GOLDEN.glob("*.fhir.json"))
PROVIDER = ProviderRef(code="IESO01", display="Online typed therapy provider")


@pytest.mark.parametrize("case", CASES)
def test_trust_record_maps_to_the_expected_fhir(case: str) -> None:
    mapping = load_mapping(GOLDEN.parent / "iaptus.yaml")
    record = json.loads((GOLDEN / f"{case}.input.json").read_text("utf-8"))
    facts = mapping.referral_facts(record)
    resources = build_referral_resources(
        "golden-trust", PROVIDER, facts, today=date(2026, 11, 26), allow_test_range=True
    )
    bundle = referral_bundle(resources)
    expected = json.loads((GOLDEN / f"{case}.fhir.json").read_text("utf-8"))
    assert bundle == expected
    assert_valid_r4(bundle)
    for resource in (resources.patient, resources.service_request, bundle):
        # round trip: parse with fhir.resources and dump again, nothing gained or lost
        assert validate_resource(json.loads(json.dumps(resource))) == resource


def test_every_inbound_golden_case_has_fhir() -> None:
    assert len(CASES) == len(list(GOLDEN.glob("*.facts.json"))) >= 5
