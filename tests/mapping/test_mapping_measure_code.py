"""``measure_code`` and ``measure_concept``: a total is known by any code the catalogue knows.

A provider codes a PHQ-9 total by SNOMED CT, by its LOINC total code, by our key, or by
several of them; the trust must get the code its own mapping asks for. The shipped
mappings are checked too: every enabled measure maps, and where a mapping sends SNOMED CT
its code map agrees with the catalogue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.domain import codes
from ehr_bridge.domain.measures import MEASURES, PANEL_LOINC_CODES
from ehr_bridge.mapping import load_mapping
from ehr_bridge.mapping.check import check_mapping
from ehr_bridge.mapping.transforms import TransformArgsError, TransformError, bind

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
SNOMED, LOINC, OURS = codes.SNOMED, codes.LOINC, codes.OUTCOME_MEASURE_SYSTEM


def code_of(value: Any, code: str) -> Any:
    return bind("measure_code", {"code": code})(value)


def concept(*codings: tuple[str, str]) -> dict[str, Any]:
    return {"coding": [{"system": s, "code": c} for s, c in codings], "text": "anything"}


@pytest.mark.parametrize(
    "value",
    [
        concept((SNOMED, "720433000")),
        concept((LOINC, "44261-6")),
        concept((OURS, "phq9")),
        concept((LOINC, "44261-6"), (SNOMED, "720433000")),
        concept(("http://example.org/local", "PHQ"), (SNOMED, " 720433000 ")),
        [{"system": LOINC, "code": "44261-6"}],  # a bare coding list
        {"system": SNOMED, "code": "720433000"},  # one Coding
    ],
    ids=["snomed", "loinc", "key", "both", "with-foreign-coding", "coding-list", "coding"],
)
def test_any_known_code_names_the_measure(value: Any) -> None:
    assert code_of(value, "key") == "phq9"
    assert code_of(value, "snomed") == "720433000"
    assert code_of(value, "loinc") == "44261-6"


@pytest.mark.parametrize(
    "value",
    [
        concept((LOINC, "44249-1")),  # the PHQ-9 panel code names no total
        concept((LOINC, "69737-5")),
        concept((SNOMED, "44261-6")),  # right code, wrong system
        concept((OURS, "PHQ9")),
        {"text": "PHQ-9"},
        [],
    ],
)
def test_a_code_the_catalogue_does_not_know_gives_nothing(value: Any) -> None:
    assert code_of(value, "key") is None


def test_a_measure_without_the_asked_code_gives_nothing() -> None:
    assert MEASURES["wsas"].snomed is None
    assert code_of(concept((OURS, "wsas")), "key") == "wsas"
    assert code_of(concept((OURS, "wsas")), "snomed") is None


def test_codings_naming_two_measures_are_refused_not_guessed() -> None:
    with pytest.raises(TransformError, match="more than one"):
        code_of(concept((SNOMED, "720433000"), (LOINC, "70274-6")), "key")


@pytest.mark.parametrize("args", [{}, {"code": "ICD10"}, {"code": "key", "system": "snomed"}])
def test_arguments_are_checked_at_load(args: dict[str, Any]) -> None:
    with pytest.raises(TransformArgsError):
        bind("measure_code", args)


def test_measure_concept_rebuilds_the_national_coding_without_panel_codes() -> None:
    sent = concept((LOINC, "69737-5"), (LOINC, "70274-6"))
    built = bind("measure_concept", {})(sent)
    pairs = [(c["system"], c["code"]) for c in built["coding"]]
    assert pairs == [(SNOMED, "445455005"), (LOINC, "70274-6"), (OURS, "gad7")]
    assert not {code for _, code in pairs} & PANEL_LOINC_CODES
    assert built["text"] == "GAD-7 total score"
    assert bind("measure_concept", {})(concept((LOINC, "69737-5"))) is None


@pytest.mark.parametrize("name", ["iaptus", "pcmis", "hl7v2-ref-i12"])
def test_shipped_mappings_map_every_enabled_measure_by_the_catalogue(name: str) -> None:
    mapping = load_mapping(MAPPINGS / f"{name}.yaml")
    (rule,) = [r for r in mapping.rules("assessment") if r.target in ("tool_code", "Measure")]
    assert [step.name for step in rule.steps] == ["measure_code"]
    assert rule.code_map is not None
    enabled = {key for key, m in MEASURES.items() if m.enabled}
    assert enabled <= set(rule.code_map)
    assert not [f for f in check_mapping(mapping) if f.level == "error" and "assessment" in f.key]


@pytest.mark.parametrize("name", ["iaptus", "hl7v2-ref-i12"])
def test_snomed_tool_codes_in_the_code_maps_agree_with_the_catalogue(name: str) -> None:
    """A trust that files by SNOMED CT gets the catalogue's concept, never a stale copy."""
    mapping = load_mapping(MAPPINGS / f"{name}.yaml")
    (rule,) = [r for r in mapping.rules("assessment") if r.target == "tool_code"]
    assert rule.code_map is not None
    for key, measure in MEASURES.items():
        if measure.enabled and measure.snomed:
            assert rule.code_map[key] == measure.snomed, key
        elif key in rule.code_map:  # no national concept: a trust-local code, never a SNOMED id
            assert not rule.code_map[key].isdigit(), key


def test_check_finds_a_measure_missing_from_the_code_map(tmp_path: Path) -> None:
    text = (MAPPINGS / "iaptus.yaml").read_text("utf-8")
    broken = tmp_path / "iaptus.yaml"
    broken.write_text(text.replace('    "wsas": "LOCAL-WSAS"\n', "", 1), "utf-8")
    findings = check_mapping(load_mapping(broken))
    assert any(
        f.level == "error"
        and f.key.endswith("outbound.assessment.tool_code")
        and "wsas" in f.message
        for f in findings
    )
