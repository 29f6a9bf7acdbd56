"""ICD-10 in its two NHS forms: F320 (data set) and F32.0 (the ICD-10 code system, FHIR)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehr_bridge.domain.icd10 import (
    NotIcd10Error,
    dataset_form,
    fhir_form,
    is_icd10,
    normalised_or_unchanged,
)

#: the ADSM provisional diagnoses of the NHS Talking Therapies manual, both forms
ADSM_PROBLEMS = [
    ("F400", "F40.0"), ("F401", "F40.1"), ("F410", "F41.0"), ("F42", "F42"),
    ("F431", "F43.1"), ("F452", "F45.2"), ("F411", "F41.1"), ("F320", "F32.0"),
]  # fmt: skip
#: "F411" with a fullwidth digit one: str.isdigit, but not ICD-10
FULLWIDTH = "F4" + chr(0xFF11) + "1"

dataset_codes = st.from_regex(r"[A-Z][0-9]{2}([0-9A-WYZ][0-9A-Z]?)?", fullmatch=True)


@pytest.mark.parametrize(("plain", "dotted"), ADSM_PROBLEMS)
def test_both_forms_of_each_adsm_problem(plain, dotted):
    assert dataset_form(plain) == dataset_form(dotted) == plain
    assert fhir_form(plain) == fhir_form(dotted) == dotted


def test_the_data_dictionary_x_filler_is_not_part_of_the_code():
    assert dataset_form("F42X") == "F42"
    assert fhir_form("F42X") == "F42"
    assert dataset_form("F42.X") == "F42"


def test_five_character_codes_keep_both_extra_characters():
    assert fhir_form("F1020") == "F10.20"
    assert dataset_form("F10.20") == "F1020"


@pytest.mark.parametrize(
    "text",
    ["", "F", "F4", "F4.1", "F4.11", "F41.", ".F411", "F41..1", "F41.1.", "41.1", "FF411",
     "F41111", "F41.111", "f41.1", "f411", " F411", "F411 ", "F 41.1", "F41-1", "F41,1",
     FULLWIDTH, "anxiety"],
)  # fmt: skip
def test_anything_else_is_not_icd10_and_the_error_holds_no_value(text):
    assert not is_icd10(text)
    with pytest.raises(NotIcd10Error) as caught:
        dataset_form(text)
    if text.strip():
        assert text.strip() not in str(caught.value)
    with pytest.raises(NotIcd10Error):
        fhir_form(text)
    assert normalised_or_unchanged(text) == text


def test_normalised_or_unchanged_passes_none_through():
    assert normalised_or_unchanged(None) is None
    assert normalised_or_unchanged("F41.0") == "F410"


@given(dataset_codes)
def test_the_forms_round_trip(code):
    dotted = fhir_form(code)
    assert dataset_form(dotted) == code
    assert fhir_form(dotted) == dotted
    assert dotted.replace(".", "") == code
    assert ("." in dotted) == (len(code) > 3)
