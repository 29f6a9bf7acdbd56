"""The measure table as the reports use it, and the `[reports]` config section."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehr_bridge.config import ReportsConfig, load_config
from ehr_bridge.domain.measures import MEASURES, measure_table
from ehr_bridge.errors import ConfigError
from ehr_bridge.reports import protocols_from_config


def test_roles_split_the_table_for_the_recovery_definition():
    roles = {key: m.role for key, m in MEASURES.items()}
    assert roles["phq9"] == "depression" and roles["gad7"] == "anxiety"
    assert roles["wsas"] == "functioning"
    assert {k for k, r in roles.items() if r == "anxiety"} == {
        "gad7",
        "pdss",
        "spin",
        "mi",
        "ocir",
        "iesr",
        "pcl5",
        "hai",
    }


def test_adsm_switch_enables_only_the_adsm_rows_and_leaves_measures_alone():
    switched = measure_table(adsm_enabled=True)
    assert measure_table() is MEASURES
    assert all(switched[k].enabled for k in ("pdss", "spin", "iesr", "pcl5", "hai"))
    assert not any(MEASURES[k].enabled for k in ("pdss", "spin", "iesr", "pcl5", "hai"))
    assert switched["phq9"] is MEASURES["phq9"]
    assert not switched["spin"].confirmed  # switching on does not make a value confirmed


def test_threshold_helpers_use_the_national_inequalities():
    phq, wsas = MEASURES["phq9"], MEASURES["wsas"]
    assert phq.at_caseness(10) and not phq.at_caseness(9)
    assert phq.reliable_decrease(-6) and not phq.reliable_decrease(-5)
    assert phq.reliable_increase(6) and not phq.reliable_increase(5)
    assert not wsas.at_caseness(40) and not wsas.reliable_increase(40)


def test_default_section_has_example_lists():
    protocols = {p.name: p for p in protocols_from_config(ReportsConfig())}
    assert protocols["depression"].problems == ("F32", "F33")
    assert protocols["risk"].problems == ()


def test_own_phrases_without_problems_apply_everywhere():
    section = ReportsConfig.model_validate({"phrases": {"cbt": ["thought record"]}})
    assert section.protocol_problems == {}


def _load(tmp_path: Path, body: str):
    path = tmp_path / "ehr-bridge.toml"
    path.write_text(body, encoding="utf-8")
    return load_config(path)


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ('[reports]\nphrases = {cbt = ["--"]}', "reports.phrases", "letter or digit"),
        ("[reports]\nphrases = {cbt = []}", "reports.phrases", "at least one phrase"),
        (
            '[reports]\nphrases = {cbt = ["x"]}\nprotocol_problems = {gad = ["F41"]}',
            "reports",
            "names gad, which has no phrases",
        ),
        (
            '[reports]\nphrases = {cbt = ["x"]}\nprotocol_problems = {cbt = ["41"]}',
            "reports",
            "ICD-10 prefixes",
        ),
        ("[reports]\nadsm = true", "reports.adsm", "unknown key; did you mean adsm_enabled?"),
    ],
)
def test_bad_sections_name_the_key(tmp_path, body, key, message):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, body)
    assert caught.value.key == key and message in str(caught.value)


def test_a_good_section_loads(tmp_path):
    config = _load(
        tmp_path,
        '[reports]\nadsm_enabled = true\nphrases = {cbt = ["thought record"]}\n'
        'protocol_problems = {cbt = ["F32", "F41.1"]}',
    )
    assert config.reports.adsm_enabled
    assert protocols_from_config(config.reports)[0].problems == ("F32", "F41.1")
