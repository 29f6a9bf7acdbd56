"""A record that cannot be mapped raises MappingError naming mapping, rule and source path.

The messages (and the whole printed traceback) must never carry the record's values, so
every hostile value below starts with a sentinel that the tests look for.
"""

from __future__ import annotations

import copy
import json
import traceback
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehr_bridge.errors import ConfigError, MappingError
from ehr_bridge.mapping import Mapping, load_mapping

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "mappings" / "iaptus.golden"
SECRET = "ZZ§"


@pytest.fixture(scope="module")
def mapping() -> Mapping:
    return load_mapping(ROOT / "mappings" / "iaptus.yaml")


def _golden(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / name).read_text(encoding="utf-8"))
    return data


def _record() -> dict[str, Any]:
    return _golden("referral-01-gp.input.json")


def _set(record: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *parents, leaf = dotted.split(".")
    node = record
    for part in parents:
        node = node[part]
    node[leaf] = value
    return record


def _printed(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


@pytest.mark.parametrize(
    ("field", "value", "rule", "source", "reason"),
    [
        ("received_date", f"{SECRET}-2026", "received_date", "received_date", "YYYY-MM-DD"),
        ("received_date", "2026-02-30", "received_date", "received_date", "YYYY-MM-DD"),
        ("received_date", None, "received_date", "received_date", "required value"),
        ("id", None, "trust_referral_id", "id", "required value"),
        ("source_of_referral", "   ", "source_of_referral", "source_of_referral", "required"),
        ("patient.gender", f"{SECRET}7", "patient.gender", "patient.gender", "code map gender"),
        ("patient.birth_date", f"{SECRET}1985", "patient.birth_date", "patient.birth_date", "date"),
        ("patient.given_name", ["Alex"], "patient.given_names", "patient.given_name", "text"),
        ("status", f"{SECRET}paused", "status", "status", "code map referral_status"),
        ("updated_at", f"{SECRET}2026-11-20T10:00:00", "updated_at", "updated_at", "timestamp"),
        ("updated_at", "2026-11-20T10:00:00", "updated_at", "updated_at", "UTC offset"),
        ("patient", f"{SECRET}not an object", "patient.local_id", "patient.local_id", "required"),
    ],
)
def test_bad_field_names_mapping_rule_and_path(
    mapping: Mapping, field: str, value: Any, rule: str, source: str, reason: str
) -> None:
    record = _set(_record(), field, value)
    with pytest.raises(MappingError) as info:
        mapping.referral_facts(record)
    err = info.value
    assert (err.mapping, err.rule, err.source_path, err.field) == ("iaptus", rule, source, rule)
    assert err.record == ("SR0000123" if field != "id" else None)
    assert reason in err.reason
    assert f"mapping iaptus, rule {rule}, source path {source}" in str(err)
    assert SECRET not in _printed(err)
    assert err.code == "mapping"


def test_pydantic_rejection_becomes_mapping_error(tmp_path: Path) -> None:
    text = (ROOT / "mappings" / "iaptus.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "patient.birth_date: {path: patient.birth_date, transform: date}",
        "patient.birth_date: {path: patient.birth_date}",
    )
    path = tmp_path / "lax.yaml"
    path.write_text(text, encoding="utf-8")
    record = _set(_record(), "patient.birth_date", f"{SECRET}-04-02")
    with pytest.raises(MappingError) as info:
        load_mapping(path).referral_facts(record)
    err = info.value
    assert (err.rule, err.source_path, err.field) == (
        "patient.birth_date",
        "patient.birth_date",
        "patient.birth_date",
    )
    assert "ReferralFacts" in err.reason
    assert SECRET not in _printed(err)


def _outbound_source(name: str) -> dict[str, Any]:
    return _golden(f"{name}.input.json")


@pytest.mark.parametrize(
    ("name", "change", "rule", "source"),
    [
        ("care-contact-01-gmt", ("resource", "period", None), "date", "resource.period.start"),
        (
            "care-contact-01-gmt",
            ("resource", "period", {"start": "2026-11-10T20:00:00Z", "end": "2026-11-10T19:00Z"}),
            "duration_minutes",
            "resource.period",
        ),
        ("care-contact-01-gmt", ("resource", "extension", []), "attendance", "resource.extension"),
        ("care-contact-01-gmt", ("resource", "type", []), "appointment_type", "resource.type"),
        (
            "clinical-note-01",
            ("resource", "content", [{"attachment": {"data": f"{SECRET}!!"}}]),
            "text",
            "resource.content[0].attachment.data",
        ),
        (
            "assessment-01-phq9",
            ("resource", "valueQuantity", {"value": f"{SECRET}x"}),
            "score",
            "resource.valueQuantity.value",
        ),
        ("assessment-01-phq9", ("context", "client_reference", None), "client_reference", None),
        (
            "referral-status-01-discharged",
            ("context", "status", f"{SECRET}paused"),
            "status",
            "context.status",
        ),
    ],
)
def test_outbound_errors_name_rule_and_path(
    mapping: Mapping, name: str, change: tuple[str, str, Any], rule: str, source: str | None
) -> None:
    doc = _outbound_source(name)
    part, key, value = change
    doc[part][key] = value
    with pytest.raises(MappingError) as info:
        mapping.outbound(doc["kind"], doc["resource"], doc["context"])
    err = info.value
    assert (err.mapping, err.rule, err.field) == ("iaptus", rule, rule)
    assert err.source_path == (source or "context.client_reference")
    assert SECRET not in _printed(err)


def test_outbound_unknown_kind_is_a_config_error(mapping: Mapping) -> None:
    with pytest.raises(ConfigError, match=r"outbound\.appointment"):
        mapping.outbound("appointment", {}, {"client_reference": "x"})


def test_jmespath_type_error_is_a_mapping_error(tmp_path: Path) -> None:
    text = (ROOT / "mappings" / "iaptus.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "presenting_problem: {path: presenting_problem, transform: [strip, upper]}",
        "presenting_problem: {path: 'length(presenting_problem)', transform: string}",
    )
    path = tmp_path / "fn.yaml"
    path.write_text(text, encoding="utf-8")
    record = _set(_record(), "presenting_problem", 12345)
    with pytest.raises(MappingError, match="shape") as info:
        load_mapping(path).referral_facts(record)
    assert "12345" not in _printed(info.value)


def test_record_identity_never_raises(mapping: Mapping) -> None:
    records: list[dict[str, Any]] = [
        {},
        {"id": {"a": 1}},
        {"id": True},
        {"updated_at": "yesterday"},
        {"updated_at": 1700000000},
        {"id": 7},
    ]
    for record in records:
        mapping.record_version(record)
        assert mapping.record_updated_at(record) is None
    assert mapping.record_id({"id": 7}) == "7"
    assert mapping.record_id({"id": True}) is None
    naive = mapping.record_updated_at({"updated_at": "2026-11-20T10:00:00"})
    assert naive is not None and naive.utcoffset() is not None


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=12).map(lambda s: SECRET + s),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
_FIELDS = [  # not "id": the trust's record id is how errors name the record, by design
    "version",
    "updated_at",
    "received_date",
    "source_of_referral",
    "presenting_problem",
    "status",
    "referred_on_to",
    "referred_on_date",
    "end_code",
    "discharge_date",
    "patient",
    "patient.local_id",
    "patient.nhs_number",
    "patient.nhs_number_status",
    "patient.given_name",
    "patient.birth_date",
    "patient.gender",
    "patient.postcode",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_FIELDS), _json, min_size=1, max_size=4))
def test_hostile_records_only_raise_safe_mapping_errors(changes: dict[str, Any]) -> None:
    mapping = _HOSTILE_MAPPING
    record = copy.deepcopy(_record())
    for field in sorted(changes, key=len):
        if field.startswith("patient.") and not isinstance(record["patient"], dict):
            continue
        _set(record, field, changes[field])
    try:
        mapping.referral_facts(record)
    except MappingError as exc:
        assert SECRET not in _printed(exc)
        assert exc.rule and exc.mapping == "iaptus"


_HOSTILE_MAPPING = load_mapping(ROOT / "mappings" / "iaptus.yaml")
