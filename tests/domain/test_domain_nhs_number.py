import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehr_bridge.domain.nhs_number import check_nhs_number, is_valid_nhs_number
from ehr_bridge.errors import RecordValidationError

#: "9912003888" in fullwidth digits: digits to str.isdigit, but not ASCII
FULLWIDTH = "".join(chr(ord(d) + 0xFEE0) for d in "9912003888")


@pytest.mark.parametrize("number", ["9912003888", "9476719931", "9434765919"])
def test_known_valid_numbers(number):
    assert is_valid_nhs_number(number)
    assert check_nhs_number(number) == number


def test_uk_core_access_example_fails_modulus_11():
    assert not is_valid_nhs_number("9912003814")


def test_check_digit_ten_is_invalid_whatever_the_last_digit():
    # 000000006: 6*2 = 12, 12 mod 11 = 1, 11 - 1 = 10 -> no valid check digit exists
    assert all(not is_valid_nhs_number(f"000000006{d}") for d in "0123456789")


def test_check_eleven_means_zero():
    # all zeros: sum 0, 11 - 0 = 11 -> check digit 0
    assert is_valid_nhs_number("0000000000")
    assert not is_valid_nhs_number("0000000001")


@pytest.mark.parametrize(
    "value", ["", "991200388", "99120038880", "99120O3888", FULLWIDTH, " 9912003888"]
)
def test_not_ten_ascii_digits_is_invalid(value):
    assert not is_valid_nhs_number(value)


def test_grouped_form_is_accepted_as_formatting():
    assert check_nhs_number("991 200 3888") == "9912003888"


@pytest.mark.parametrize(
    "value", ["991-200-3888", "9912 003 888", "991  200 3888", " 9912003888", "99120038", "abc"]
)
def test_other_formats_are_refused_without_echoing_the_value(value):
    with pytest.raises(RecordValidationError) as caught:
        check_nhs_number(value, field="patient.nhs_number")
    assert caught.value.code == "nhs_number_format"
    assert caught.value.field == "patient.nhs_number"
    assert value.strip() not in str(caught.value)


def test_modulus_failure_names_the_field_not_the_number():
    with pytest.raises(RecordValidationError) as caught:
        check_nhs_number("9912003814", field="entry[0].identifier")
    assert caught.value.code == "nhs_number_invalid"
    assert caught.value.field == "entry[0].identifier"
    assert "9912003814" not in str(caught.value)
    assert "991" not in str(caught.value)


def _with_check_digit(nine: str) -> str | None:
    total = sum(int(d) * w for d, w in zip(nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 10:
        return None
    return nine + str(0 if check == 11 else check)


@given(st.text(alphabet="0123456789", min_size=9, max_size=9), st.integers(0, 9), st.integers(1, 9))
def test_any_single_digit_change_is_caught(nine, position, delta):
    number = _with_check_digit(nine)
    if number is None:
        return
    assert is_valid_nhs_number(number)
    changed = number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1 :]
    assert not is_valid_nhs_number(changed)
