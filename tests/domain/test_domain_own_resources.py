"""``check_own_resource`` skips the model dump: prove the dump would change nothing."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from ehr_bridge.domain.referral import ProviderRef, build_referral_resources
from ehr_bridge.domain.validate import check_own_resource, validate_resource
from ehr_bridge.errors import RecordValidationError
from ehr_bridge.mapping import load_mapping
from ehr_bridge.sim.generator import generate

MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "iaptus.yaml"


def test_built_referral_resources_equal_their_canonical_dump() -> None:
    mapping = load_mapping(MAPPING)
    provider = ProviderRef(code="IESO01", display="Provider", ods_code="X1Y2Z")
    dataset = generate(seed=11, referrals=400)
    built = 0
    for record in dataset.referrals:
        facts = mapping.referral_facts(record)
        resources = build_referral_resources(
            "c1", provider, facts, today=date(2026, 11, 2), allow_test_range=True
        )
        for resource in (resources.patient, resources.service_request):
            assert validate_resource(resource) == resource
            built += 1
    assert built >= 800


def test_check_own_resource_still_rejects_invalid_fhir() -> None:
    with pytest.raises(RecordValidationError) as caught:
        check_own_resource({"resourceType": "Patient", "id": "p1", "birthDate": "31/12/2000"})
    assert caught.value.field == "birthDate"
    assert caught.value.code == "fhir"
