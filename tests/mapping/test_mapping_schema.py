"""The schema export editors use, the public surface, and the documented example."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

import ehr_bridge.mapping as mapping_pkg
from ehr_bridge.mapping import export_json_schema, load_mapping

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "mappings" / "mapping.schema.json"
DOCS = ROOT / "docs" / "mapping-language.md"


def test_committed_schema_equals_export() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == export_json_schema(), (
        "regenerate mappings/mapping.schema.json (see docs/mapping-language.md)"
    )


def test_iaptus_mapping_validates_against_json_schema() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    raw = yaml.safe_load((ROOT / "mappings" / "iaptus.yaml").read_text(encoding="utf-8"))
    jsonschema.validate(raw, schema, cls=jsonschema.Draft202012Validator)


def test_json_schema_flags_typos_for_editors() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    raw = yaml.safe_load((ROOT / "mappings" / "iaptus.yaml").read_text(encoding="utf-8"))
    raw["inbound"]["referral"]["status"]["transform"] = ["strip", "lowr"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, schema, cls=jsonschema.Draft202012Validator)


def test_public_surface() -> None:
    assert sorted(mapping_pkg.__all__) == [
        "CURRENT_SPEC_VERSION",
        "Mapping",
        "MappingSpec",
        "OUTBOUND_KINDS",
        "TRANSFORMS",
        "export_json_schema",
        "load_mapping",
    ]
    for name in mapping_pkg.__all__:
        assert getattr(mapping_pkg, name) is not None


def _blocks(language: str, text: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_integrators_example_in_docs_works(tmp_path: Path) -> None:
    text = DOCS.read_text(encoding="utf-8").split("## An integrator's example", 1)[1]
    record = json.loads(_blocks("json", text)[0])
    inbound, outbound = _blocks("yaml", text)[:2]
    path = tmp_path / "acme.yaml"
    path.write_text(inbound + outbound, encoding="utf-8")
    mapping = load_mapping(path)
    facts = mapping.referral_facts(record).model_dump(mode="json")
    assert facts["trust_referral_id"] == "R-77"
    assert facts["source_of_referral"] == "A1"
    assert facts["source_of_referral_snomed"] == "108161000000109"
    assert facts["updated_at"] == "2026-05-01T08:00:00Z"
    assert facts["patient"]["local_id"] == "88123"
    assert facts["patient"]["nhs_number"] == "9990001235"
    assert facts["patient"]["given_names"] == ["Sam", "Lee"]
    assert facts["patient"]["gender"] == "female"
    assert mapping.outbound_kinds() == frozenset({"care_contact"})
