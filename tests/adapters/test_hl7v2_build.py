"""ORU^R01 and MDM^T02 built with hl7apy: fields in place, delimiters escaped, every version."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hl7apy.parser import parse_message
from hypothesis import given, settings
from hypothesis import strategies as st

from ehr_bridge.adapters.hl7v2.build import Header, build
from ehr_bridge.adapters.hl7v2.er7 import split_messages
from ehr_bridge.adapters.hl7v2.record import decode

VERSIONS = ("2.4", "2.5", "2.5.1")
REFERENCE = "0123456789abcdef0123456789abcdef"
HEADER = Header(
    sending_facility="IESO01",
    receiving_application="IAPTUS",
    receiving_facility="RXX",
    local_id_authority="RXX",
)


def _score(**extra: Any) -> dict[str, Any]:
    return {
        "client_reference": REFERENCE,
        "referral_id": "SR0000123",
        "patient_nhs_number": "9434765919",
        "patient_local_id": "RXX0042",
        "tool_code": "720433000",
        "tool_name": "PHQ-9 total score",
        "score": 14,
        "completed_at": "2026-11-10T19:35:00Z",
        **extra,
    }


def _note(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "client_reference": REFERENCE,
        "referral_id": "SR0000123",
        "authored_at": "2026-07-14T23:40:00Z",
        "text": text,
        "title": "Session 3 note",
        "author": "Therapist T-17",
        **extra,
    }


def _read(message: str) -> dict[str, Any]:
    (segments,) = split_messages(message)
    return decode(segments, ZoneInfo("UTC"))


@pytest.mark.parametrize("version", VERSIONS)
def test_oru_r01_carries_the_score_and_our_reference_three_times(version: str) -> None:
    header = Header(**{**HEADER.__dict__, "version": version})
    control_id, message = build("assessment", _score(), header)
    record = _read(message)
    assert control_id == REFERENCE
    assert [s[:3] for s in message.strip("\r").split("\r")] == ["MSH", "PID", "ORC", "OBR", "OBX"]
    msh, obr, obx = record["MSH"][0], record["OBR"][0], record["OBX"][0]
    assert msh["9"] == [{"1": "ORU", "2": "R01", "3": "ORU_R01"}] and msh["12"][0]["1"] == version
    assert msh["10"][0]["1"] == REFERENCE == obr["3"][0]["1"] == record["ORC"][0]["3"][0]["1"]
    assert obr["2"][0]["1"] == "SR0000123"
    assert obx["2"][0]["1"] == "NM" and obx["5"][0]["1"] == "14" and obx["11"][0]["1"] == "F"
    assert obx["3"] == [{"1": "720433000", "2": "PHQ-9 total score", "3": "SCT"}]
    assert obx["14"][0]["1"] == "2026-11-10T19:35:00+00:00"
    assert record["PID"][0]["3"] == [
        {"1": "9434765919", "4": "NHS", "5": "NH"},
        {"1": "RXX0042", "4": "RXX", "5": "MR"},
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_mdm_t02_sets_txa_12_and_txa_17_and_the_text_lines(version: str) -> None:
    header = Header(**{**HEADER.__dict__, "version": version})
    _, message = build("clinical_note", _note("First line.\nSecond line."), header)
    record = _read(message)
    txa = record["TXA"][0]
    assert [s[:3] for s in message.strip("\r").split("\r")] == [
        "MSH",
        "EVN",
        "PID",
        "PV1",
        "TXA",
        "OBX",
    ]
    assert txa["12"][0]["1"] == REFERENCE and txa["17"][0]["1"] == "AU"
    assert txa["14"][0]["1"] == "SR0000123" and txa["2"][0]["1"] == "PR"
    assert [r["1"] for r in record["OBX"][0]["5"]] == ["First line.", "Second line."]
    assert "3" not in record["PID"][0]  # no identifiers in the payload: none invented


def test_a_built_message_parses_with_hl7apy() -> None:
    for kind, payload in (("assessment", _score()), ("clinical_note", _note("a|b"))):
        _, message = build(kind, payload, HEADER)
        parsed = parse_message(message.strip("\r"), find_groups=True)
        assert parsed.msh.msh_10.to_er7() == REFERENCE


def test_a_decimal_score_keeps_its_fraction() -> None:
    _, message = build("assessment", _score(score=12.5), HEADER)
    assert _read(message)["OBX"][0]["5"][0]["1"] == "12.5"


hostile = st.text(
    alphabet=st.sampled_from(list("ab |^~&\\\r\n#\u00e9\u2019")), min_size=0, max_size=40
)


@settings(max_examples=60, deadline=None)
@given(text=hostile, title=hostile, author=hostile, referral=hostile.filter(str.strip))
def test_delimiters_in_any_field_never_break_the_message(
    text: str, title: str, author: str, referral: str
) -> None:
    payload = _note(text, title=title or None, author=author or None, referral_id=referral)
    _, message = build("clinical_note", payload, HEADER)
    assert message.count("\r") == 6 and "\n" not in message  # six segments, nothing more
    record = _read(message)
    lines = [r.get("1", "") for r in record["OBX"][0].get("5", [{}])]
    assert "\n".join(lines) == text.replace("\r\n", "\n").replace("\r", "\n")
    flat = " ".join(referral.replace("\r\n", " ").replace("\r", " ").split("\n"))
    assert record["TXA"][0]["14"][0].get("1", "") == flat


def _risk(**extra: Any) -> dict[str, Any]:
    return {
        "client_reference": REFERENCE,
        "referral_id": "SR0000123",
        "patient_nhs_number": "9434765919",
        "risk_code": "225444004",
        "risk_name": "At risk for suicide",
        "abnormal_flag": "AA",
        "priority": "S",
        "raised_at": "2026-11-10T19:41:00Z",
        "reason_code": "phq9_item9",
        "reason_name": "PHQ-9 item 9 response",
        "summary": "Item 9 answered 3.\nPlease contact today.",
        **extra,
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_a_risk_alert_is_a_coded_observation_with_its_flag_and_priority(version: str) -> None:
    header = Header(**{**HEADER.__dict__, "version": version})
    control_id, message = build("risk_alert", _risk(), header)
    record = _read(message)
    assert control_id == REFERENCE
    segments = [s[:3] for s in message.strip("\r").split("\r")]
    timing = [] if version == "2.4" else ["TQ1"]
    assert segments == ["MSH", "PID", "ORC", "OBR", *timing, "OBX", "NTE"]
    obr, obx = record["OBR"][0], record["OBX"][0]
    assert record["MSH"][0]["10"][0]["1"] == REFERENCE == obr["3"][0]["1"]
    assert obr["2"][0]["1"] == "SR0000123" == record["ORC"][0]["2"][0]["1"]
    assert obr["4"] == obx["3"] == [{"1": "RISK-ALERT", "2": "Risk alert", "3": "L"}]
    assert obx["2"][0]["1"] == ("CE" if version == "2.4" else "CWE")
    assert obx["5"] == [{"1": "225444004", "2": "At risk for suicide", "3": "SCT"}]
    assert obx["8"][0]["1"] == "AA" and obx["11"][0]["1"] == "F"
    assert obx["14"][0]["1"] == obr["7"][0]["1"] == "2026-11-10T19:41:00+00:00"
    assert obx["17"] == [{"1": "phq9_item9", "2": "PHQ-9 item 9 response", "3": "L"}]
    if version == "2.4":
        assert obr["27"][0]["6"] == "S"
    else:
        assert record["TQ1"][0]["9"] == [{"1": "S", "2": "Stat", "3": "HL70485"}]
    nte = record["NTE"][0]
    assert nte["2"][0]["1"] == "L" and nte["4"] == [{"1": "RE", "2": "Remark", "3": "HL70364"}]
    assert [r["1"] for r in nte["3"]] == ["Item 9 answered 3.", "Please contact today."]
    parsed = parse_message(message.strip("\r"), find_groups=True)
    assert parsed.msh.msh_10.to_er7() == REFERENCE


def test_a_risk_alert_without_summary_or_reason_has_no_nte_or_method() -> None:
    _, message = build("risk_alert", _risk(summary=None, reason_code=None), HEADER)
    record = _read(message)
    assert "NTE" not in record and "17" not in record["OBX"][0]


@pytest.mark.parametrize(
    ("change", "key"),
    [({"abnormal_flag": "HH"}, "abnormal_flag"), ({"priority": "stat"}, "priority")],
)
def test_a_risk_alert_takes_only_the_table_codes(change: dict[str, Any], key: str) -> None:
    from ehr_bridge.errors import TerminalError

    with pytest.raises(TerminalError, match=f"key {key}"):
        build("risk_alert", _risk(**change), HEADER)


@settings(max_examples=40, deadline=None)
@given(summary=hostile.filter(str.strip), name=hostile, referral=hostile.filter(str.strip))
def test_delimiters_in_a_risk_alert_never_break_the_message(
    summary: str, name: str, referral: str
) -> None:
    payload = _risk(summary=summary, risk_name=name or None, referral_id=referral)
    _, message = build("risk_alert", payload, HEADER)
    assert message.count("\r") == 7 and "\n" not in message
    record = _read(message)
    lines = [r.get("1", "") for r in record["NTE"][0].get("3", [{}])]
    assert "\n".join(lines) == summary.replace("\r\n", "\n").replace("\r", "\n")
    assert record["OBX"][0]["5"][0].get("2", "") == (name or "").replace("\r\n", " ").replace(
        "\r", " "
    ).replace("\n", " ")
