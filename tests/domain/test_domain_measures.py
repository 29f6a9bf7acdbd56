import pytest

from ehr_bridge.domain.codes import LOINC, OUTCOME_MEASURE_SYSTEM, QUESTIONNAIRE_BASE, SNOMED
from ehr_bridge.domain.measures import (
    MEASURES,
    MEASURES_VERSION,
    PANEL_LOINC_CODES,
    measure_coding,
    measure_for_code,
    total_from_items,
)
from ehr_bridge.errors import RecordValidationError


def test_table_is_versioned_and_keyed_by_measure_key():
    assert MEASURES_VERSION == "2026-12"
    assert all(key == measure.key for key, measure in MEASURES.items())
    with pytest.raises(TypeError):
        MEASURES["x"] = MEASURES["phq9"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("key", "snomed", "loinc", "items", "total_max", "caseness", "rci"),
    [
        ("phq9", "720433000", "44261-6", 9, 27, 10, 6),
        ("gad7", "445455005", "70274-6", 7, 21, 8, 4),
    ],
)
def test_confirmed_measures(key, snomed, loinc, items, total_max, caseness, rci):
    m = MEASURES[key]
    assert (m.snomed, m.loinc, m.item_count, m.item_min, m.item_max) == (snomed, loinc, items, 0, 3)
    assert (m.total_min, m.total_max, m.caseness, m.reliable_change) == (
        0,
        total_max,
        caseness,
        rci,
    )
    assert m.enabled and m.confirmed


def test_wsas_has_no_unconfirmed_national_codes():
    wsas = MEASURES["wsas"]
    assert (wsas.snomed, wsas.loinc) == (None, None)
    assert (wsas.item_count, wsas.item_max, wsas.total_max) == (5, 8, 40)
    assert wsas.enabled and not wsas.confirmed


def test_unverified_adsm_rows_ship_disabled():
    adsm = [m for m in MEASURES.values() if m.problems]
    assert {m.key for m in adsm} == {"pdss", "spin", "mi", "ocir", "iesr", "pcl5", "hai"}
    assert all(not m.enabled and not m.confirmed and m.snomed is None for m in adsm)


def test_questionnaire_url():
    assert MEASURES["gad7"].questionnaire_url == f"{QUESTIONNAIRE_BASE}/gad7"


@pytest.mark.parametrize(
    ("system", "code", "key"),
    [
        (SNOMED, "720433000", "phq9"),
        (LOINC, "44261-6", "phq9"),
        (LOINC, "70274-6", "gad7"),
        (OUTCOME_MEASURE_SYSTEM, "wsas", "wsas"),
        (OUTCOME_MEASURE_SYSTEM, "pdss", "pdss"),
    ],
)
def test_measure_for_code(system, code, key):
    found = measure_for_code(system, code)
    assert found is not None and found.key == key


@pytest.mark.parametrize(
    ("system", "code"),
    [(LOINC, "44249-1"), (LOINC, "69737-5"), (SNOMED, "44261-6"), (LOINC, "phq9"), (SNOMED, "x")],
)
def test_panel_codes_and_wrong_systems_name_no_measure(system, code):
    assert measure_for_code(system, code) is None


def test_coding_has_snomed_loinc_total_and_our_key_never_a_panel():
    codings = measure_coding(MEASURES["phq9"])
    assert [(c["system"], c["code"]) for c in codings] == [
        (SNOMED, "720433000"),
        (LOINC, "44261-6"),
        (OUTCOME_MEASURE_SYSTEM, "phq9"),
    ]
    assert all(c["code"] not in PANEL_LOINC_CODES for c in codings)


def test_coding_without_national_codes_keeps_our_key():
    assert [c["system"] for c in measure_coding(MEASURES["wsas"])] == [OUTCOME_MEASURE_SYSTEM]


def test_totals():
    assert total_from_items(MEASURES["phq9"], [3] * 9) == 27
    assert total_from_items(MEASURES["gad7"], [0, 1, 2, 3, 0, 1, 2]) == 9
    assert total_from_items(MEASURES["wsas"], [8, 8, 8, 8, 8]) == 40


def test_wsas_one_missing_item_is_the_mean_of_the_others_unrounded():
    # work item "not applicable": 4 answered items sum 16, mean 4 -> total 20
    total = total_from_items(MEASURES["wsas"], [None, 4, 4, 4, 4])
    assert total == 20 and isinstance(total, int)
    # 1+2+3+8 = 14, mean 3.5 -> 17.5 (no rounding to a whole score)
    assert total_from_items(MEASURES["wsas"], [1, 2, 3, None, 8]) == 17.5
    # 1+1+1+2 = 5, mean 1.25 -> 6.25
    assert total_from_items(MEASURES["wsas"], [1, 1, 1, 2, None]) == 6.25
    # 3+4+4+4 = 15, mean 3.75 -> 18.75 (the NHS Data Dictionary's kind of total)
    assert total_from_items(MEASURES["wsas"], [3, 4, None, 4, 4]) == 18.75


def test_wsas_two_missing_items_are_disregarded():
    with pytest.raises(RecordValidationError) as caught:
        total_from_items(MEASURES["wsas"], [None, 4, None, 4, 4])
    assert caught.value.code == "items_missing"
    assert caught.value.field == "item[0]"


def test_phq9_allows_no_missing_item():
    with pytest.raises(RecordValidationError) as caught:
        total_from_items(MEASURES["phq9"], [1] * 8 + [None])
    assert (caught.value.code, caught.value.field) == ("items_missing", "item[8]")


@pytest.mark.parametrize(
    ("items", "code", "field"),
    [
        ([1] * 8, "item_count", "item"),
        ([1] * 10, "item_count", "item"),
        ([1, 1, 4, 1, 1, 1, 1, 1, 1], "item_range", "item[2]"),
        ([1, 1, 1, -1, 1, 1, 1, 1, 1], "item_range", "item[3]"),
        ([1, 1, 1, 1, True, 1, 1, 1, 1], "item_type", "item[4]"),
        ([1, 1, 1, 1, 1, 1.0, 1, 1, 1], "item_type", "item[5]"),
    ],
)
def test_bad_items_are_rejected_with_their_path(items, code, field):
    with pytest.raises(RecordValidationError) as caught:
        total_from_items(MEASURES["phq9"], items)
    assert (caught.value.code, caught.value.field) == (code, field)
