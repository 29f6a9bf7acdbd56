import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehr_bridge.domain.nhs_number import (
    OTHER_SCHEME_CODE,
    check_nhs_number,
    is_valid_nhs_number,
    nhs_number_scheme,
)
from ehr_bridge.errors import RecordValidationError

#: "9912003888" in fullwidth digits: digits to str.isdigit, but not ASCII
FULLWIDTH = "".join(chr(ord(d) + 0xFEE0) for d in "9912003888")

#: Modulus 11 valid numbers at the edges of the issued NHS number ranges
ISSUED = ["4000000004", "4999999994", "6000000006", "7999999997", "3113000009", "3200000007"]
#: Modulus 11 valid test-range numbers: Wikipedia's example, UK Core's, PDS sandbox's
TEST_NUMBERS = ["9434765919", "9912003888", "9476719931", "9000000009"]


def _refusal(value: str, **kwargs) -> RecordValidationError:
    with pytest.raises(RecordValidationError) as caught:
        check_nhs_number(value, field="patient.nhs_number", **kwargs)
    error = caught.value
    assert error.field == "patient.nhs_number"
    assert value not in str(error) and value[:3] not in str(error)
    return error


@pytest.mark.parametrize("number", ISSUED)
def test_issued_range_numbers_are_accepted_on_any_connection(number):
    assert is_valid_nhs_number(number)
    assert check_nhs_number(number) == number
    assert check_nhs_number(number, allow_test_range=True) == number


@pytest.mark.parametrize("number", TEST_NUMBERS)
def test_test_range_needs_a_test_connection(number):
    assert is_valid_nhs_number(number)  # the format and check digit are fine
    assert check_nhs_number(number, allow_test_range=True) == number
    assert _refusal(number).code == "nhs_number_test_range"


@pytest.mark.parametrize("digit", "0123456789")
def test_a_repeated_digit_is_a_placeholder_everywhere(digit):
    number = digit * 10
    assert is_valid_nhs_number(number)  # every repdigit passes Modulus 11: hence the rule
    assert _refusal(number).code == "nhs_number_placeholder"
    assert _refusal(number, allow_test_range=True).code == "nhs_number_placeholder"


@pytest.mark.parametrize(
    "number",
    [
        "5000000005",  # 5xx: never issued
        "8000000008",  # 8xx: Republic of Ireland IHI block, not an NHS number
        "8599999990",
        "0000000019",  # below every scheme
        "1000000001",  # CHI range, but day 10 of month 00 is no birth date
        "0013000004",  # day 00
        "3002000000",  # 30 February
    ],
)
def test_non_issued_numbers_are_refused(number):
    assert is_valid_nhs_number(number)
    assert _refusal(number).code == "nhs_number_range"
    assert _refusal(number, allow_test_range=True).code == "nhs_number_range"


@pytest.mark.parametrize(
    ("number", "scheme"),
    [("0101901232", "scotland_chi"), ("3112999991", "scotland_chi"), ("2902000006", "scotland_chi"),
     ("3200000015", "northern_ireland_hc"), ("3999999993", "northern_ireland_hc")],
)  # fmt: skip
def test_chi_and_hc_numbers_are_another_scheme_never_an_nhs_number(number, scheme):
    assert is_valid_nhs_number(number)
    assert nhs_number_scheme(number) == scheme
    assert _refusal(number).code == OTHER_SCHEME_CODE
    assert _refusal(number, allow_test_range=True).code == OTHER_SCHEME_CODE


@pytest.mark.parametrize(
    ("number", "scheme"),
    [("0100999999", "none"), ("0101000000", "scotland_chi"), ("3112999999", "scotland_chi"),
     ("3113000000", "nhs"), ("3200000009", "nhs"), ("3200000010", "northern_ireland_hc"),
     ("3999999999", "northern_ireland_hc"), ("4000000000", "nhs"), ("4999999999", "nhs"),
     ("5000000000", "none"), ("5999999999", "none"), ("6000000000", "nhs"),
     ("7999999999", "nhs"), ("8000000000", "none"), ("8999999999", "none"),
     ("9000000000", "test"), ("9990000000", "test"), ("9999999999", "test")],
)  # fmt: skip
def test_scheme_boundaries(number, scheme):
    assert nhs_number_scheme(number) == scheme


@given(st.from_regex(r"[0-9]{10}", fullmatch=True))
def test_a_live_connection_accepts_only_issued_nhs_numbers(number):
    try:
        accepted = check_nhs_number(number)
    except RecordValidationError:
        return
    assert accepted == number and number[0] in "3467"
    assert nhs_number_scheme(number) == "nhs" and len(set(number)) > 1


@given(st.from_regex(r"[0-9]{10}", fullmatch=True))
def test_a_test_connection_adds_the_test_range_and_nothing_else(number):
    def outcome(**kwargs):
        try:
            return check_nhs_number(number, **kwargs)
        except RecordValidationError as exc:
            return exc.code

    live, test = outcome(), outcome(allow_test_range=True)
    if live != test:
        assert live == "nhs_number_test_range" and test == number and number[0] == "9"


def test_uk_core_access_example_fails_modulus_11():
    assert not is_valid_nhs_number("9912003814")


def test_check_digit_ten_is_invalid_whatever_the_last_digit():
    # 000000006: 6*2 = 12, 12 mod 11 = 1, 11 - 1 = 10 -> no valid check digit exists
    assert all(not is_valid_nhs_number(f"000000006{d}") for d in "0123456789")


def test_check_eleven_means_zero():
    # all zeros: sum 0, 11 - 0 = 11 -> check digit 0 (valid format, but a placeholder)
    assert is_valid_nhs_number("0000000000")
    assert not is_valid_nhs_number("0000000001")


@pytest.mark.parametrize(
    "value", ["", "991200388", "99120038880", "99120O3888", FULLWIDTH, " 9912003888"]
)
def test_not_ten_ascii_digits_is_invalid(value):
    assert not is_valid_nhs_number(value)


def test_grouped_form_is_accepted_as_formatting():
    assert check_nhs_number("401 023 2137") == "4010232137"
    assert check_nhs_number("991 200 3888", allow_test_range=True) == "9912003888"


@pytest.mark.parametrize(
    "value", ["991-200-3888", "9912 003 888", "991  200 3888", " 9912003888", "99120038", "abc"]
)
def test_other_formats_are_refused_without_echoing_the_value(value):
    with pytest.raises(RecordValidationError) as caught:
        check_nhs_number(value, field="patient.nhs_number", allow_test_range=True)
    assert caught.value.code == "nhs_number_format"
    assert caught.value.field == "patient.nhs_number"
    assert value.strip() not in str(caught.value)


def test_modulus_failure_names_the_field_not_the_number():
    with pytest.raises(RecordValidationError) as caught:
        check_nhs_number("9912003814", field="entry[0].identifier", allow_test_range=True)
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
