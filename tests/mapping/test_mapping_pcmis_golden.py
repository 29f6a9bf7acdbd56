"""The PC-MIS-style mapping: its golden fixtures, its schema, and the pull-side FHIR it makes."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import jsonschema
import yaml

from ehr_bridge.domain.referral import build_referral_resources, referral_bundle
from ehr_bridge.mapping import OUTBOUND_KINDS, load_mapping
from ehr_bridge.mapping.check import check_mapping
from ehr_bridge.mapping.golden import golden_dir, run_golden
from ehr_bridge.mapping.preview import GOLDEN_PROVIDER
from support.fhir_schema import assert_valid_r4

ROOT = Path(__file__).resolve().parents[2]
PCMIS = ROOT / "mappings" / "pcmis.yaml"


def test_every_golden_case_passes() -> None:
    report = run_golden(load_mapping(PCMIS), golden_dir(PCMIS))
    failures = {c.name: (c.error, c.differences) for c in report.cases if not c.passed}
    assert failures == {}
    sections = {case.section for case in report.cases}
    assert sections == {"inbound", *OUTBOUND_KINDS}
    assert sum(1 for case in report.cases if case.section == "inbound") >= 4


def test_no_rule_is_dead_and_only_a_description_goes_unread() -> None:
    report = run_golden(load_mapping(PCMIS), golden_dir(PCMIS))
    assert all(names == [] for names in report.never_fired.values())
    assert report.unread_fields["inbound"] == ["Source.Description"]


def test_both_bundled_mappings_pass_check_and_the_json_schema() -> None:
    schema = json.loads((ROOT / "mappings" / "mapping.schema.json").read_text("utf-8"))
    for name in ("iaptus.yaml", "pcmis.yaml"):
        path = ROOT / "mappings" / name
        assert check_mapping(load_mapping(path)) == []
        raw = yaml.safe_load(path.read_text("utf-8"))
        jsonschema.validate(raw, schema, cls=jsonschema.Draft202012Validator)


def test_golden_records_make_valid_uk_core_fhir() -> None:
    mapping = load_mapping(PCMIS)
    for expected in sorted(golden_dir(PCMIS).glob("*.facts.json")):
        path = expected.with_name(expected.name.replace(".facts.", ".input."))
        facts = mapping.referral_facts(json.loads(path.read_text("utf-8")))
        resources = build_referral_resources(
            "golden-trust", GOLDEN_PROVIDER, facts, today=date(2027, 2, 1), allow_test_range=True
        )
        assert_valid_r4(referral_bundle(resources))


def test_record_identity_reads_the_local_offset() -> None:
    mapping = load_mapping(PCMIS)
    record = json.loads((golden_dir(PCMIS) / "referral-02-self-untidy.input.json").read_text())
    assert mapping.record_version(record) == "1"
    updated = mapping.record_updated_at(record)
    assert updated is not None and updated.isoformat() == "2026-07-01T08:00:00.250000+00:00"
