"""The trust simulators file ADSM scores under their own codes, with each scale's own ranges.

They stand for someone else's system, so they refuse what a real trust would: a local code
it never configured, a total outside the scale, a decimal where the scale has none, items
that do not give the total the way the scale scores it. Each error names the field only.
"""

from __future__ import annotations

from typing import Any

import pytest

from ehr_bridge.errors import RecordValidationError
from ehr_bridge.sim.fhir_rules import AGREED_LOCAL, check_observation
from ehr_bridge.sim.fhir_store import FhirSimError
from ehr_bridge.sim.pcmis.validation import questionnaire
from ehr_bridge.sim.validation import assessment

JsonDict = dict[str, Any]
PDSS_ITEMS = [2, 3, 1, 2, 2, 1, 3]  # 14
MI_ITEMS = [3, 2, 2, 3, 2, 2, 3, 2, 2, 3, 2, 2, 3, None, 2, 2, 3, 2, 2, 3, 2, None, 2, 3, 2, 2, 2]
MI_MEAN = 2.32  # 58 / 25 answered


def iaptus_body(**changes: Any) -> JsonDict:
    body = {
        "client_reference": "ref-1",
        "tool_code": "LOCAL-PDSS",
        "score": 14,
        "completed_at": "2026-11-10T19:35:00Z",
        "items": PDSS_ITEMS,
    }
    return {**body, **changes}


def pcmis_body(**changes: Any) -> JsonDict:
    body = {
        "ExternalRef": "ref-1",
        "Measure": "PDSS",
        "TotalScore": 14,
        "DateCompleted": "10/11/2026",
        "Answers": PDSS_ITEMS,
    }
    return {**body, **changes}


def observation(code: str, value: float) -> JsonDict:
    return {
        "resourceType": "Observation",
        "code": {"coding": [{"system": AGREED_LOCAL, "code": code}]},
        "valueQuantity": {"value": value},
    }


ACCEPTED = [
    ("LOCAL-PDSS", "PDSS", "pdss", 14, PDSS_ITEMS),
    ("LOCAL-PDSS", "PDSS", "pdss", 0, None),
    ("LOCAL-MI-ALONE", "MI_ALONE", "mi", MI_MEAN, MI_ITEMS),
    ("LOCAL-MI-ALONE", "MI_ALONE", "mi", 1, [1] * 27),
    ("LOCAL-MI-ALONE", "MI_ALONE", "mi", 5, None),
    ("LOCAL-SPIN", "SPIN", "spin", 68, [4] * 17),
    ("LOCAL-IESR", "IESR", "iesr", 88, None),
    ("LOCAL-PCL5", "PCL5", "pcl5", 80, None),
    ("LOCAL-HAI", "HAI", "hai", 54, [3] * 18),
]


@pytest.mark.parametrize(("local", "name", "key", "score", "items"), ACCEPTED)
def test_every_trust_files_an_adsm_in_its_range(
    local: str, name: str, key: str, score: float, items: list[int | None] | None
) -> None:
    filed = assessment(iaptus_body(tool_code=local, score=score, items=items), ())
    assert (filed["tool_code"], filed["score"], filed["items"]) == (local, score, items)
    row = questionnaire(pcmis_body(Measure=name, TotalScore=score, Answers=items), ())
    assert (row["Measure"], row["TotalScore"], row["Answers"]) == (name, score, items)
    check_observation(observation(key, score))


REFUSED = [
    ({"tool_code": "LOCAL-OCIR", "items": None}, {"Measure": "OCIR", "Answers": None}, "ocir",
     "tool_code", "Measure"),
    ({"score": 29, "items": None}, {"TotalScore": 29, "Answers": None}, "pdss",
     "score", "TotalScore"),
    ({"score": 14.5, "items": None}, {"TotalScore": 14.5, "Answers": None}, "pdss",
     "score", "TotalScore"),
    ({"score": 15}, {"TotalScore": 15}, None, "items", "Answers"),
    ({"items": [*PDSS_ITEMS[:-1], 5], "score": 16}, {"Answers": [*PDSS_ITEMS[:-1], 5],
     "TotalScore": 16}, None, "items[6]", "Answers[6]"),
    ({"items": [*PDSS_ITEMS[:-1], None], "score": 13}, {"Answers": [*PDSS_ITEMS[:-1], None],
     "TotalScore": 13}, None, "items", "Answers"),
]  # fmt: skip


@pytest.mark.parametrize(("iaptus", "pcmis", "fhir_key", "field", "pcmis_field"), REFUSED)
def test_trusts_refuse_what_they_could_not_file_safely(
    iaptus: JsonDict, pcmis: JsonDict, fhir_key: str | None, field: str, pcmis_field: str
) -> None:
    with pytest.raises(RecordValidationError) as caught:
        assessment(iaptus_body(**iaptus), ())
    assert caught.value.field == field
    with pytest.raises(RecordValidationError) as caught:
        questionnaire(pcmis_body(**pcmis), ())
    assert caught.value.field == pcmis_field
    if fhir_key is not None:
        with pytest.raises(FhirSimError):
            check_observation(observation(fhir_key, iaptus.get("score", 14)))


MI_REFUSED = [
    ({"score": 0.5, "items": None}, "score"),  # a mean of 1..5 ratings is never below 1
    ({"score": 5.01, "items": None}, "score"),
    ({"score": 2.333, "items": None}, "score"),  # two decimal places at most
    ({"score": 2.33}, "items"),  # the answered items' mean is 2.32
    ({"items": [0, *MI_ITEMS[1:]]}, "items[0]"),  # ratings start at 1
    ({"items": [None] * 6 + MI_ITEMS[6:]}, "items"),  # more than five skipped
]


@pytest.mark.parametrize(("changes", "field"), MI_REFUSED)
def test_the_mobility_inventory_is_checked_as_a_mean_of_1_to_5(
    changes: JsonDict, field: str
) -> None:
    body = iaptus_body(tool_code="LOCAL-MI-ALONE", score=MI_MEAN, items=MI_ITEMS) | changes
    with pytest.raises(RecordValidationError) as caught:
        assessment(body, ())
    assert caught.value.field == field


@pytest.mark.parametrize("value", [0.5, 5.5, 2.333])
def test_the_fhir_trust_checks_a_mean_against_its_scale(value: float) -> None:
    with pytest.raises(FhirSimError):
        check_observation(observation("mi", value))


def test_the_fhir_trust_refuses_a_decimal_where_the_scale_has_none() -> None:
    with pytest.raises(FhirSimError):
        check_observation(observation("pdss", 14.5))
    with pytest.raises(FhirSimError):
        check_observation(observation("ocir", 14))  # not a tool this trust agreed
