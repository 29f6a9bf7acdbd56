"""mappings/hl7v2-ref-i12.yaml: golden cases in and out, and reasons that name segment and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ehr_bridge.adapters.hl7v2.build import Header, build, checked
from ehr_bridge.adapters.hl7v2.er7 import decode_bytes, split_messages
from ehr_bridge.adapters.hl7v2.record import decode
from ehr_bridge.errors import MappingError
from ehr_bridge.mapping import Mapping, load_mapping

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "mappings" / "hl7v2-ref-i12.golden"
FIXTURES = ROOT / "fixtures" / "hl7v2"
SOURCES = {
    "referral-01-gp": "uk_REF-I12-01-gp.hl7",
    "referral-02-self": "uk_REF-I12-02-self.hl7",
    "referral-03-cancel": "uk_REF-I14-03-cancel.hl7",
    "referral-04-latin1-dtm": "uk_REF-I12-04-latin1-dtm.hl7",
}
INBOUND = sorted(GOLDEN.glob("*.facts.json"))
OUTBOUND = sorted(GOLDEN.glob("*.payload.json"))


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _input(expected: Path) -> Any:
    return _load(expected.with_name(expected.name.split(".")[0] + ".input.json"))


@pytest.fixture(scope="module")
def mapping() -> Mapping:
    return load_mapping(ROOT / "mappings" / "hl7v2-ref-i12.yaml")


def test_golden_set_is_complete() -> None:
    inputs = {p.name.split(".")[0] for p in GOLDEN.glob("*.input.json")}
    assert inputs == {p.name.split(".")[0] for p in INBOUND + OUTBOUND}
    assert {_input(p)["kind"] for p in OUTBOUND} == {"assessment", "clinical_note", "risk_alert"}


@pytest.mark.parametrize("case", sorted(SOURCES))
def test_golden_inputs_are_the_decoded_fixture_messages(case: str) -> None:
    (segments,) = split_messages(decode_bytes((FIXTURES / SOURCES[case]).read_bytes()))
    expected = _load(GOLDEN / f"{case}.input.json")
    meta = {k: expected.pop(k) for k in ("updated_at", "file")}
    assert decode(segments, ZoneInfo("Europe/London")) == expected
    assert meta["file"].endswith(SOURCES[case])


@pytest.mark.parametrize("expected", INBOUND, ids=lambda p: p.name.split(".")[0])
def test_inbound_golden(mapping: Mapping, expected: Path) -> None:
    assert mapping.referral_facts(_input(expected)).model_dump(mode="json") == _load(expected)


@pytest.mark.parametrize("expected", OUTBOUND, ids=lambda p: p.name.split(".")[0])
def test_outbound_golden_and_the_writer_accepts_it(mapping: Mapping, expected: Path) -> None:
    source = _input(expected)
    payload = mapping.outbound(source["kind"], source["resource"], source["context"])
    assert payload == _load(expected)
    control_id, message = build(source["kind"], payload, Header())
    assert control_id == source["context"]["client_reference"]
    assert message.startswith("MSH|")
    checked(source["kind"], payload)


def _gp() -> dict[str, Any]:
    record: dict[str, Any] = _load(GOLDEN / "referral-01-gp.input.json")
    return record


@pytest.mark.parametrize(
    ("change", "field", "source"),
    [
        (lambda r: r["MSH"][0]["9"][0].update({"1": "ADT", "2": "A04"}), "status", 'MSH[0]."9"'),
        (lambda r: r["RF1"][0].pop("6"), "trust_referral_id", 'RF1[0]."6"'),
        (lambda r: r["RF1"][0]["7"][0].update({"1": "20261331"}), "received_date", 'RF1[0]."7"'),
        (lambda r: r["RF1"][0]["10"][0].update({"1": "Z9"}), "source_of_referral", 'RF1[0]."10"'),
        (lambda r: r["PRD"].pop(1), "referred_on_to", 'PRD[?"1"'),
        (lambda r: r["PID"][0]["3"].pop(1), "patient.local_id", 'PID[0]."3"'),
        (lambda r: r["PID"][0]["8"][0].update({"1": "X"}), "patient.gender", 'PID[0]."8"'),
        (lambda r: r.pop("MSH"), "status", 'MSH[0]."9"'),
    ],
)
def test_a_bad_referral_is_refused_naming_segment_and_field(
    mapping: Mapping, change: Any, field: str, source: str
) -> None:
    record = _gp()
    change(record)
    with pytest.raises(MappingError) as caught:
        mapping.referral_facts(record)
    assert caught.value.field == field
    assert source in caught.value.safe_message
    assert "O'BRIEN" not in caught.value.safe_message and "9434765919" not in str(caught.value)


def test_a_missing_nhs_number_is_not_an_error_but_a_missing_local_id_is(mapping: Mapping) -> None:
    record = _gp()
    record["PID"][0]["3"].pop(0)
    assert mapping.referral_facts(record).patient.nhs_number is None


def test_the_writer_refuses_a_payload_key_it_does_not_know() -> None:
    from ehr_bridge.errors import TerminalError

    good = {"client_reference": "c", "referral_id": "r", "tool_code": "x", "score": 1}
    good["completed_at"] = "2026-01-01T00:00:00Z"
    with pytest.raises(TerminalError) as caught:
        checked("assessment", {**good, "tool": "x"})
    assert "key tool: extra_forbidden" in str(caught.value)
    with pytest.raises(TerminalError) as caught:
        checked("assessment", {k: v for k, v in good.items() if k != "score"})
    assert "key score: missing" in str(caught.value)
    with pytest.raises(TerminalError):
        checked("care_contact", {})
