"""Each transform in the closed registry: what it accepts, what it returns, what it refuses."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.domain import codes
from ehr_bridge.mapping.transforms import (
    EXTENSION_ALIASES,
    SYSTEM_ALIASES,
    TRANSFORMS,
    TransformArgsError,
    TransformError,
    bind,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "mapping-language.md"


def run(name: str, value: Any, **args: Any) -> Any:
    return bind(name, args)(value)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("strip", "  B1 ", "B1"),
        ("strip", "   ", None),
        ("upper", "f411", "F411"),
        ("lower", "Referred_On", "referred_on"),
        ("remove_spaces", "999 000\t1235", "9990001235"),
        ("remove_spaces", "  ", None),
        ("split_words", "Jo  Anne ", ["Jo", "Anne"]),
        ("split_words", "", None),
        ("string", 3, "3"),
        ("string", "x", "x"),
        ("number", "14", 14),
        ("number", 9.0, 9),
        ("number", 2.5, 2.5),
        ("strip_leading_zeros", "05", "5"),
        ("strip_leading_zeros", "00", "0"),
        ("strip_leading_zeros", 5, "5"),
        ("strip_leading_zeros", "X", "X"),
        ("date", "2026-11-01", "2026-11-01"),
        ("date", date(2026, 11, 1), "2026-11-01"),
        (
            "utc_timestamp",
            datetime(2026, 7, 1, 9, 0, tzinfo=timezone(timedelta(hours=1))),
            "2026-07-01T08:00:00Z",
        ),
        ("utc_timestamp", "2026-07-15T00:40:00+01:00", "2026-07-14T23:40:00Z"),
        ("utc_timestamp", "2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z"),
        ("london_date", "2026-11-10T23:30:00+00:00", "2026-11-10"),
        ("london_date", "2026-07-14T23:30:00Z", "2026-07-15"),
        ("london_time", "2026-11-10T19:30:00Z", "19:30"),
        ("london_time", "2026-07-14T18:05:00Z", "19:05"),
        ("london_time", "2026-03-29T00:59:00Z", "00:59"),  # last minute of GMT
        ("london_time", "2026-03-29T01:00:00Z", "02:00"),  # first minute of BST
        ("period_minutes", {"start": "2026-11-10T19:30:00Z", "end": "2026-11-10T20:20:00Z"}, 50),
        ("period_minutes", {"start": "2026-10-25T00:30:00Z", "end": "2026-10-25T01:30:00Z"}, 60),
        ("base64_text", base64.b64encode("café".encode()).decode(), "café"),
    ],
)
def test_plain_transform(name: str, value: Any, expected: Any) -> None:
    assert run(name, value) == expected


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("strip", 5, "expected text"),
        ("upper", ["a"], "expected text"),
        ("string", True, "text or a number"),
        ("string", {"a": 1}, "text or a number"),
        ("number", "fourteen", "expected a number"),
        ("number", True, "expected a number"),
        ("number", "nan", "finite"),
        ("number", "1e400", "finite"),
        ("strip_leading_zeros", 1.5, "expected a code"),
        ("date", "2026-02-30", "YYYY-MM-DD"),
        ("date", "20261101", "YYYY-MM-DD"),
        ("date", "01/11/2026", "YYYY-MM-DD"),
        ("date", datetime(2026, 11, 1, tzinfo=UTC), "expected text"),
        ("utc_timestamp", datetime(2026, 11, 1), "UTC offset"),
        ("utc_timestamp", "2026-11-20T10:00:00", "UTC offset"),
        ("london_time", "yesterday", "ISO 8601"),
        ("period_minutes", {"start": "2026-11-10T19:30:00Z"}, "start and end"),
        ("period_minutes", "50", "start and end"),
        ("period_minutes", {"start": "2026-11-10T20:30Z", "end": "2026-11-10T19:30Z"}, "before"),
        ("base64_text", "not base64!", "base64"),
        ("base64_text", base64.b64encode(b"\xff\xfe").decode(), "UTF-8"),
    ],
)
def test_plain_transform_refuses(name: str, value: Any, reason: str) -> None:
    with pytest.raises(TransformError, match=reason) as info:
        run(name, value)
    exc = info.value  # a chained library error would quote the value in a traceback
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


@pytest.mark.parametrize(
    ("value", "width", "expected"),
    [("1", 2, "01"), (46, 2, "46"), ("7", 3, "007"), ("X", 2, "X"), (" 5 ", 2, "05")],
)
def test_zero_pad(value: Any, width: int, expected: str) -> None:
    assert run("zero_pad", value, width=width) == expected


ENCOUNTER_TYPE = [
    {"coding": [{"system": codes.SNOMED, "code": "228557008"}]},
    {
        "coding": [
            {"system": codes.DATASET_APPOINTMENT_TYPE, "code": "02"},
            {"system": codes.DATASET_CONSULTATION_MECHANISM, "code": "10"},
        ]
    },
]


@pytest.mark.parametrize(
    ("value", "system", "expected"),
    [
        (ENCOUNTER_TYPE, "appointment_type", "02"),
        (ENCOUNTER_TYPE, "consultation_mechanism", "10"),
        (ENCOUNTER_TYPE, "snomed", "228557008"),
        (ENCOUNTER_TYPE, "loinc", None),
        (ENCOUNTER_TYPE[0], codes.SNOMED, "228557008"),  # one CodeableConcept, full URL
        ({"system": codes.LOINC, "code": "44261-6"}, "loinc", "44261-6"),  # a bare Coding
        ("not a concept", "snomed", None),
    ],
)
def test_coding_code(value: Any, system: str, expected: str | None) -> None:
    assert run("coding_code", value, system=system) == expected


ATT = codes.ATTENDANCE_EXTENSION


@pytest.mark.parametrize(
    ("extensions", "expected"),
    [
        ([{"url": ATT, "valueCoding": {"system": codes.DATASET_ATTENDANCE, "code": "5"}}], "5"),
        ([{"url": "x", "valueCode": "1"}, {"url": ATT, "valueCode": "6"}], "6"),
        ([{"url": ATT, "valueCodeableConcept": {"coding": [{"system": "s", "code": "3"}]}}], "3"),
        ([{"url": ATT, "valueString": "7"}], "7"),
        ([{"url": ATT}], None),
        ([{"url": "other", "valueCode": "5"}], None),
        ({"url": ATT, "valueInteger": 5}, 5),
    ],
)
def test_extension_value(extensions: Any, expected: Any) -> None:
    assert run("extension_value", extensions, url="attendance") == expected


def test_aliases_resolve_to_codes_constants() -> None:
    assert SYSTEM_ALIASES["attendance"] == codes.DATASET_ATTENDANCE
    assert EXTENSION_ALIASES["attendance"] == codes.ATTENDANCE_EXTENSION
    assert all(
        url.startswith("http") for url in [*SYSTEM_ALIASES.values(), *EXTENSION_ALIASES.values()]
    )


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("strip", {"x": 1}),
        ("zero_pad", {}),
        ("zero_pad", {"width": "2"}),
        ("zero_pad", {"width": True}),
        ("coding_code", {"system": 5}),
        ("coding_code", {"system": "snomed", "display": "x"}),
        ("extension_value", {"url": "ftp://x"}),
    ],
)
def test_bad_arguments(name: str, args: dict[str, Any]) -> None:
    with pytest.raises(TransformArgsError):
        bind(name, args)


def test_unknown_name_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        bind("eval", {})


def test_every_transform_and_alias_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in TRANSFORMS:
        assert f"| `{name}" in text, name
    for alias in [*SYSTEM_ALIASES, *EXTENSION_ALIASES]:
        assert f"| `{alias}` |" in text, alias
