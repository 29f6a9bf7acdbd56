"""The pull path's faster id and Modulus 11 helpers give exactly the answers of the plain ones."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from ehr_bridge.domain.ids import EHR_BRIDGE_NAMESPACE, resource_id
from ehr_bridge.domain.nhs_number import (
    _check_digit,
    check_nhs_number,
    is_valid_nhs_number,
    nhs_number_scheme,
)

parts = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)


@settings(max_examples=500)
@given(connection=parts, kind=parts, key=parts)
def test_resource_id_is_the_uuid5_of_the_business_key(connection: str, kind: str, key: str) -> None:
    expected = str(uuid.uuid5(EHR_BRIDGE_NAMESPACE, f"{connection}|{kind}|{key}"))
    assert resource_id(connection, kind, key) == expected


def _plain_check_digit(nine: str) -> int | None:
    total = sum(int(d) * w for d, w in zip(nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    return 0 if check == 11 else None if check == 10 else check


@settings(max_examples=1000)
@given(nine=st.from_regex(r"[0-9]{9}", fullmatch=True), last=st.integers(0, 9))
def test_modulus_11_matches_the_plain_formula(nine: str, last: int) -> None:
    assert _check_digit(nine) == _plain_check_digit(nine)
    number = f"{nine}{last}"
    assert is_valid_nhs_number(number) == (_plain_check_digit(nine) == last)
    if is_valid_nhs_number(number) and nhs_number_scheme(number) == "nhs" and len(set(number)) > 1:
        assert check_nhs_number(f"{nine[:3]} {nine[3:6]} {nine[6:]}{last}") == number
