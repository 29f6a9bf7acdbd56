"""Every shipped mapping: either ICD-10 form in, data-set form in facts, F32.0 in FHIR.

Each case takes a golden referral of the mapping, puts the presenting problem where that
trust system holds it, maps it and builds it as the pull does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.domain import codes
from ehr_bridge.domain.referral import ProviderRef, build_referral_resources
from ehr_bridge.errors import EhrBridgeError
from ehr_bridge.mapping import load_mapping

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
PROVIDER = ProviderRef("IESO01", "ieso")


def _iaptus(record: dict[str, Any], code: str) -> None:
    record["presenting_problem"] = code


def _pcmis(record: dict[str, Any], code: str) -> None:
    record["Diagnosis"] = code


def _fhir(record: dict[str, Any], code: str) -> None:
    record["service_request"]["reasonCode"] = [{"coding": [{"system": codes.ICD10, "code": code}]}]


def _hl7(record: dict[str, Any], code: str) -> None:
    record["DG1"] = [{"1": [{"1": "1"}], "3": [{"1": code, "3": "I10"}]}]


#: mapping -> (a golden referral input, where its trust system holds the problem)
CASES: dict[str, tuple[str, Callable[[dict[str, Any], str], None]]] = {
    "iaptus": ("referral-01-gp", _iaptus),
    "pcmis": ("referral-01-gp", _pcmis),
    "fhir-r4": ("referral-01-gp", _fhir),
    "hl7v2-ref-i12": ("referral-01-gp", _hl7),
}


def _pulled(name: str, code: str):
    case, place = CASES[name]
    record = json.loads((MAPPINGS / f"{name}.golden" / f"{case}.input.json").read_text("utf-8"))
    place(record, code)
    facts = load_mapping(MAPPINGS / f"{name}.yaml").referral_facts(record)
    return facts, lambda: build_referral_resources(
        "t", PROVIDER, facts, today=date(2027, 1, 1), allow_test_range=True
    )


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize(
    ("sent", "dataset", "fhir"),
    [("F32.0", "F320", "F32.0"), ("F320", "F320", "F32.0"), ("F41.0", "F410", "F41.0"),
     ("F410", "F410", "F41.0"), ("F42", "F42", "F42"), ("F43.1", "F431", "F43.1")],
)  # fmt: skip
def test_every_mapping_accepts_both_forms(name, sent, dataset, fhir):
    facts, build = _pulled(name, sent)
    assert facts.presenting_problem == dataset
    reason = build().service_request["reasonCode"]
    assert reason == [{"coding": [{"system": codes.ICD10, "code": fhir}]}]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("sent", ["F4.11", "F41..1", "ANXIETY", "F4", "41.1"])
def test_every_mapping_quarantines_nonsense_naming_the_field(name, sent):
    with pytest.raises(EhrBridgeError) as caught:
        _pulled(name, sent)[1]()
    assert getattr(caught.value, "field", None) == "presenting_problem"
    assert sent not in str(caught.value)
