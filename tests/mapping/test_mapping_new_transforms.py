"""Transforms added for the second dialect: dates in other formats, removing characters."""

from __future__ import annotations

from typing import Any

import pytest

from ehr_bridge.mapping.transforms import TransformArgsError, TransformError, bind


def run(name: str, value: Any, **args: Any) -> Any:
    return bind(name, args)(value)


@pytest.mark.parametrize(
    ("value", "pattern", "expected"),
    [
        ("01/11/2026", "%d/%m/%Y", "2026-11-01"),
        (" 29/02/2028 ", "%d/%m/%Y", "2028-02-29"),
        ("2026.11.01", "%Y.%m.%d", "2026-11-01"),
    ],
)
def test_parse_date(value: str, pattern: str, expected: str) -> None:
    assert run("parse_date", value, format=pattern) == expected


@pytest.mark.parametrize("value", ["31/02/2026", "2026-11-01", "", 20261101, "1/13/2026"])
def test_parse_date_refuses_without_quoting_the_value(value: Any) -> None:
    with pytest.raises(TransformError) as info:
        run("parse_date", value, format="%d/%m/%Y")
    assert str(value) not in str(info.value) or value == ""


def test_format_date() -> None:
    assert run("format_date", "2026-07-15", format="%d/%m/%Y") == "15/07/2026"
    with pytest.raises(TransformError, match="YYYY-MM-DD"):
        run("format_date", "15/07/2026", format="%d/%m/%Y")


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"format": "%d/%m"},
        {"format": 3},
        {"format": "%d/%m/%Y", "tz": "UTC"},
        {"format": "%d%d%m%Y"},
    ],
)
def test_date_formats_are_checked_at_load(args: dict[str, Any]) -> None:
    with pytest.raises(TransformArgsError):
        bind("parse_date", args)


def test_remove_chars() -> None:
    assert run("remove_chars", "F41.1", chars=".") == "F411"
    assert run("remove_chars", "(0113) 496-0000", chars="()- ") == "01134960000"
    assert run("remove_chars", "..", chars=".") is None
    with pytest.raises(TransformArgsError):
        bind("remove_chars", {"chars": ""})
    with pytest.raises(TransformError):
        run("remove_chars", 41.1, chars=".")
