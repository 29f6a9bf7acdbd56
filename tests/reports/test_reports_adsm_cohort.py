"""The hand-computed ADSM cohort (fixtures/cohort/adsm.json; working in ADSM.md).

Each referral tests one rule of the national definition with the anxiety-disorder-specific
measures: which measure stands in for GAD-7, the thresholds met exactly, the Mobility
Inventory's strict cut-off and decimal RCI, the PTSD rule with both PCL-5 and IES-R, the
GAD-7 back-up when the ADSM has no pair, and a course stored with a date-only start.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console
from test_reports_cli import PERIOD, runner, write_config

from ehr_bridge.cli.app import app
from ehr_bridge.domain.measures import MEASURES_VERSION, measure_table
from ehr_bridge.reports import (
    Episode,
    Period,
    ReportOptions,
    build_reports,
    csv_rows,
    episode_outcome,
    load_episodes,
    outcomes_report,
    print_report,
    render_page,
    reports_from_store,
)
from ehr_bridge.reports.export import counts_json, quality_json, report_json
from ehr_bridge.reports.model import Unreadable
from ehr_bridge.store import Store

Raw = dict[str, Any]


def _outcomes(episodes: list[Episode], period: Period, adsm: bool) -> Raw:
    table = measure_table(adsm_enabled=adsm)
    report = outcomes_report(
        episodes, period, table, measures_version=MEASURES_VERSION, adsm_enabled=adsm
    )
    return counts_json(report.total)


def _flags(episodes: list[Episode], adsm: bool) -> dict[str, Raw]:
    table = measure_table(adsm_enabled=adsm)
    flags = {}
    for episode in episodes:
        outcome = episode_outcome(episode, table)
        if outcome.finished:
            flags[episode.trust_referral_id] = {
                "anxiety": outcome.anxiety_measure,
                "at_caseness": outcome.at_caseness,
                "recovered": outcome.recovered,
                "improved": outcome.improved,
                "deteriorated": outcome.deteriorated,
            }
    return flags


def test_the_catalogue_has_the_thresholds_the_working_assumes(adsm_expected):
    # The hand working in ADSM.md rests on these values: if the catalogue changes one,
    # this names it, and ADSM.md and adsm-expected.json must be worked again.
    table = measure_table(adsm_enabled=True)
    got = {
        key: {
            "caseness": table[key].caseness,
            "reliable_change": table[key].reliable_change,
            "caseness_strict": table[key].caseness_strict,
        }
        for key in adsm_expected["thresholds"]
    }
    assert got == adsm_expected["thresholds"]
    assert all(table[key].enabled for key in adsm_expected["thresholds"])
    assert not any(table[key].enabled for key in adsm_expected["switched_off_with_adsms_on"])


def test_outcomes_with_adsms_match_the_hand_computed_values(
    adsm_episodes, adsm_period, adsm_expected
):
    assert _outcomes(adsm_episodes, adsm_period, adsm=True) == adsm_expected["outcomes_with_adsm"]


def test_outcomes_without_adsms_fall_back_to_gad7_everywhere(
    adsm_episodes, adsm_period, adsm_expected
):
    assert (
        _outcomes(adsm_episodes, adsm_period, adsm=False) == adsm_expected["outcomes_without_adsm"]
    )


@pytest.mark.parametrize("adsm", [True, False], ids=["adsm", "gad7"])
def test_per_episode_flags_and_the_anxiety_measure_used(adsm_episodes, adsm_expected, adsm):
    key = "episode_flags_with_adsm" if adsm else "episode_flags_without_adsm"
    assert _flags(adsm_episodes, adsm) == adsm_expected[key]


def test_the_stored_cohort_gives_the_same_figures_through_the_loader(
    adsm_db, adsm_period, adsm_expected
):
    store = Store(adsm_db)
    try:
        reports = reports_from_store(
            store, "cohort", ReportOptions(period=adsm_period, adsm_enabled=True)
        )
    finally:
        store.close()
    assert counts_json(reports.outcomes.total) == adsm_expected["outcomes_with_adsm"]
    activity = reports.activity
    assert {
        "appointments": activity.appointments,
        "attended": activity.attended,
        "attended_without_time": activity.attended_without_time,
        "did_not_attend": activity.did_not_attend,
    } == adsm_expected["activity"]
    assert quality_json(reports.data_quality) == adsm_expected["data_quality"]


def test_stored_pure_and_loaded_episodes_agree_per_referral(adsm_db, adsm_expected):
    store = Store(adsm_db)
    try:
        loaded = list(load_episodes(store, "cohort"))
    finally:
        store.close()
    assert _flags(loaded, adsm=True) == adsm_expected["episode_flags_with_adsm"]
    by_id = {e.trust_referral_id: e for e in loaded}
    # presenting problems written the ICD-10 way (F41.0) are read in the data set's form
    assert by_id["A01"].presenting_problem == "F410"
    assert by_id["A06"].presenting_problem == "F431"
    # the date-only session of A15 is kept (a finished course), without a time of day
    assert [s.precision for s in by_id["A15"].sessions] == ["day", "time"]
    assert by_id["A15"].finished_treatment


def test_report_all_json_over_the_stored_cohort_exits_0(
    tmp_path, adsm_db, adsm_cohort, adsm_expected
):
    config = write_config(tmp_path, adsm_db, adsm_cohort["reports"], adsm=True)
    outcome = runner.invoke(app, ["--config", str(config), "report", "all", *PERIOD, "--json"])
    assert outcome.exit_code == 0, outcome.stdout[-2000:]
    (report,) = json.loads(outcome.stdout)
    assert report["data_quality"] == adsm_expected["data_quality"]
    outcomes = report["outcomes"]
    assert outcomes["adsm_enabled"] is True
    assert outcomes["recovery"] == adsm_expected["outcomes_with_adsm"]["recovery"]


def test_build_reports_json_carries_the_data_quality_block(
    adsm_episodes, adsm_period, adsm_expected
):
    reports = build_reports("cohort", adsm_episodes, ReportOptions(period=adsm_period))
    body = report_json(reports, "activity")
    assert body["attended_without_time"] == adsm_expected["activity"]["attended_without_time"]
    assert body["data_quality"]["sessions_without_time"] == 1


def test_unreadable_records_show_in_every_output_by_reference_only(adsm_episodes, adsm_period):
    broken = replace(adsm_episodes[0], unreadable=(Unreadable("Encounter/enc-9", "period.start"),))
    reports = build_reports("cohort", [broken, *adsm_episodes[1:]], ReportOptions(adsm_period))
    console = Console(file=io.StringIO(), width=200)
    print_report(console, reports, "waits")
    table = console.file.getvalue()
    assert "Data quality" in table and "Encounter/enc-9 (period.start)" in table
    page = render_page([reports], datetime(2026, 1, 1, tzinfo=UTC), ["activity"])
    assert "Data quality" in page and "Encounter/enc-9" in page
    rows = [r for r in csv_rows(reports, "outcomes") if r[2].startswith("data_quality/")]
    assert ("cohort", "outcomes", "data_quality/unreadable", "", 1, None, None, None) in rows
    assert (
        "cohort", "outcomes", "data_quality/unreadable_resource", "Encounter/enc-9",
        None, None, None, "period.start",
    ) in rows  # fmt: skip
