import re
import uuid

import pytest

from ehr_bridge.domain.ids import EHR_BRIDGE_NAMESPACE, artefact_key, resource_id

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def test_namespace_is_the_documented_derivation():
    assert uuid.uuid5(uuid.NAMESPACE_URL, "https://fhir.ehr-bridge.dev") == EHR_BRIDGE_NAMESPACE


def test_resource_id_is_stable_fhir_safe_and_lowercase():
    first = resource_id("trust-a", "ServiceRequest", "SR0000123")
    assert first == resource_id("trust-a", "ServiceRequest", "SR0000123")
    assert FHIR_ID.fullmatch(first)
    assert first == first.lower()
    assert uuid.UUID(first).version == 5


@pytest.mark.parametrize(
    "other",
    [
        ("trust-b", "ServiceRequest", "SR0000123"),
        ("trust-a", "Patient", "SR0000123"),
        ("trust-a", "ServiceRequest", "SR0000124"),
    ],
)
def test_resource_id_differs_when_any_part_differs(other):
    assert resource_id(*other) != resource_id("trust-a", "ServiceRequest", "SR0000123")


def test_resource_id_refuses_empty_parts():
    with pytest.raises(ValueError, match="key"):
        resource_id("trust-a", "Patient", "")


def test_artefact_key_is_32_hex_and_deterministic():
    key = artefact_key("trust-a", "SR1", "encounter", "e1")
    assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert key == artefact_key("trust-a", "SR1", "encounter", "e1")


def test_artefact_key_parts_cannot_be_shifted_across_a_separator():
    assert artefact_key("a|b", "c") != artefact_key("a", "b|c")
    assert artefact_key("ab", "c") != artefact_key("a", "bc")


def test_artefact_key_needs_a_part():
    with pytest.raises(ValueError):
        artefact_key()
