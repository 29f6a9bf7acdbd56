"""The measure catalogue as data: consistent rows, sources for every enabled value, docs in step."""

import re
from pathlib import Path

import pytest

from ehr_bridge.domain.codes import LOINC, OUTCOME_MEASURE_SYSTEM, SNOMED
from ehr_bridge.domain.measures import (
    MEASURES,
    MEASURES_VERSION,
    PANEL_LOINC_CODES,
    measure_for_code,
    measure_table,
    total_from_items,
)
from ehr_bridge.errors import RecordValidationError

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROWS = list(MEASURES.values())


@pytest.mark.parametrize("measure", ROWS, ids=lambda m: m.key)
def test_ranges_agree_with_the_items(measure):
    if measure.total_kind == "mean":
        assert (measure.total_min, measure.total_max) == (measure.item_min, measure.item_max)
    else:
        assert measure.total_min == measure.item_count * measure.item_min
        assert measure.total_max == measure.item_count * measure.item_max
    # a pro-rated or mean total is not whole, so the row must say decimals are allowed
    if measure.max_missing_items or measure.total_kind == "mean":
        assert measure.decimal_total


@pytest.mark.parametrize("measure", ROWS, ids=lambda m: m.key)
def test_codes_are_national_totals_and_name_one_measure(measure):
    assert measure.loinc not in PANEL_LOINC_CODES
    for system, code in [
        (OUTCOME_MEASURE_SYSTEM, measure.key),
        (SNOMED, measure.snomed),
        (LOINC, measure.loinc),
    ]:
        if code is not None:
            assert measure_for_code(system, code) is measure


@pytest.mark.parametrize("measure", ROWS, ids=lambda m: m.key)
def test_every_row_cites_its_sources_and_enabled_means_confirmed_use(measure):
    assert measure.sources, "every row cites where its values come from"
    if measure.confirmed:
        assert measure.enabled
    if measure.problems:  # ADSM rows: diagnoses in data-set form, disabled until verified
        assert all(re.fullmatch(r"F\d{2,3}", p) for p in measure.problems)
        assert not measure.enabled and measure.role == "anxiety"


def test_the_adsm_switch_turns_on_only_rows_with_both_thresholds():
    switched = measure_table(adsm_enabled=True)
    on = {k for k, m in switched.items() if m.enabled and not MEASURES[k].enabled}
    assert on == {"pdss", "spin", "mi", "iesr", "pcl5", "hai"}
    assert not switched["ocir"].enabled  # no published threshold: F42 falls back to GAD-7
    assert not switched["phobia"].enabled  # three separate items, no total
    assert all(not switched[k].confirmed for k in on)


def test_ies_r_is_listed_before_pcl_5_so_it_wins_for_ptsd():
    assert [m.key for m in ROWS if "F431" in m.problems] == ["iesr", "pcl5"]


def test_mobility_inventory_is_a_mean_above_2_3():
    mi = MEASURES["mi"]
    assert total_from_items(mi, [3] * 27) == 3
    assert total_from_items(mi, [1] * 22 + [None] * 5) == 1  # five skipped: still valid
    assert total_from_items(mi, [2] * 13 + [3] * 14) == 2.52  # 68/27 = 2.518...
    with pytest.raises(RecordValidationError) as caught:
        total_from_items(mi, [1] * 21 + [None] * 6)
    assert caught.value.code == "items_missing"
    assert not mi.at_caseness(2.3) and mi.at_caseness(2.31)
    assert mi.reliable_decrease(-0.73) and not mi.reliable_decrease(-0.72)


def test_other_cut_offs_are_at_or_above():
    assert MEASURES["phq9"].at_caseness(10) and not MEASURES["phq9"].at_caseness(9)
    assert MEASURES["gad7"].at_caseness(8) and not MEASURES["gad7"].at_caseness(7.75)


def _catalogue_section() -> str:
    text = (DOCS / "reports.md").read_text("utf-8")
    start = text.index("## The measure catalogue")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_docs_list_every_row_and_the_table_version():
    section = _catalogue_section()
    assert f"`{MEASURES_VERSION}`" in section
    for measure in ROWS:
        assert f"| `{measure.key}` |" in section, measure.key
