"""NHS number checks, done before any NHS number is stored or sent.

A wrong NHS number attaches a therapy record to someone else, so a number that cannot
be a real NHS number is rejected (and the record quarantined), never "fixed". Error
messages name the field and the rule only: the number itself is patient data and never
appears in them. The checks, in order:

1. **Format**: 10 ASCII digits, or the printed 3-3-4 grouping (``nhs_number_format``).
2. **Modulus 11** check digit; a check of 10 means no valid number (``nhs_number_invalid``).
   NHS Data Dictionary "NHS NUMBER"; ISB 0149 NHS Number (the standard for how systems
   accept, store and transmit it).
3. **Placeholders**: a repeated digit (0000000000, 9999999999, ...) passes Modulus 11
   for every digit but is a "not known" filler, never an issued number, on any
   connection (``nhs_number_placeholder``).
4. **Issuing scheme, by range** (ten-digit values, bounds inclusive):

   ===========================  ==========================================================
   4000000000 - 4999999999      NHS number: England, Wales, Isle of Man
   6000000000 - 7999999999      NHS number: England, Wales, Isle of Man
   3113000000 - 3200000009      NHS number: England ("3xx" below H&C's 320 000 001)
   0101000000 - 3112999999      Scotland CHI (first six digits a DDMMYY birth date)
   3200000010 - 3999999999      Northern Ireland H&C number
   9000000000 - 9999999999      never issued: the NHS's test range (999 000 0000 -
                                999 999 9999 reserved for test data; PDS and NHS England
                                test systems use 9xx numbers too, e.g. 900 000 0009)
   anything else                no scheme issues it (``nhs_number_range``)
   ===========================  ==========================================================

   Sources: Wikipedia "NHS number" (number ranges, citing PDS guidance); NHS Digital,
   "Synthetic data in live environments - NHS e-Referral Service" (the 999 range for
   synthetic patients); the uk-fci ``nhs-number`` package (Faculty of Clinical
   Informatics) ``constants.py`` and docs (9xx "not to be issued, synthetic/test
   patients PDS"; 5xx, 8xx not NHS numbers). The sources disagree on 3113000000 -
   3199999999 (uk-fci: unallocated; Wikipedia and the domain brief: England issues 3xx
   below 320 000 001); we follow the latter so that a real English patient is not
   quarantined.

A **test number** (9xx) is accepted only with ``allow_test_range`` (connections marked
``test_connection = true``: the simulators, the demo, a trust's test system); on a live
connection it is ``nhs_number_test_range``. A **CHI or H&C number** has the NHS number's
format and check digit but is not an NHS number: it is ``nhs_number_other_scheme``, and
the connection's ``other_uk_numbers`` policy decides what the referral builder does
with it (quarantine, or identify the patient by the trust's local id only); it never
passes as an NHS number.
"""

from __future__ import annotations

import re
from datetime import date
from operator import mul
from typing import Literal

from ehr_bridge.errors import RecordValidationError

_DIGITS = re.compile(r"[0-9]{10}")
#: the grouping people and letters use: "999 123 4567" (3-3-4, single spaces)
_GROUPED = re.compile(r"[0-9]{3} [0-9]{3} [0-9]{4}")
_WEIGHTS = tuple(range(10, 1, -1))
#: an ASCII digit's byte is its value plus 48: the weighted byte sum is over by this much
_ZERO_OFFSET = ord("0") * sum(_WEIGHTS)

Scheme = Literal["nhs", "test", "scotland_chi", "northern_ireland_hc", "none"]
#: what a connection does with a Scottish CHI or Northern Ireland H&C number
OtherUkNumbers = Literal["quarantine", "local_id"]

#: the error code of a valid-format number from another UK scheme (CHI, H&C)
OTHER_SCHEME_CODE = "nhs_number_other_scheme"

#: (first, last) ten-digit values of each scheme's range, inclusive
_NHS_RANGES = ((4_000_000_000, 4_999_999_999), (6_000_000_000, 7_999_999_999))
_ENGLAND_3XX = (3_113_000_000, 3_200_000_009)
_CHI = (101_000_000, 3_112_999_999)
_HC = (3_200_000_010, 3_999_999_999)
_TEST_FROM = 9_000_000_000


def _check_digit(first_nine: str) -> int | None:
    """The Modulus 11 check digit for nine digits, or None when no valid one exists (10).

    Weighs the ASCII bytes rather than ``int()`` of each character: this runs once per
    pulled referral, and the per-character calls were most of its cost.
    """
    total = sum(map(mul, first_nine.encode("ascii"), _WEIGHTS)) - _ZERO_OFFSET
    check = 11 - (total % 11)
    if check == 11:
        return 0
    return None if check == 10 else check


def is_valid_nhs_number(value: str) -> bool:
    """True when ``value`` is exactly 10 digits whose last digit is the Modulus 11 check.

    Format and check digit only: whether a scheme issues the number is ``nhs_number_scheme``
    (``check_nhs_number`` applies both).
    """
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        return False
    return _passes_modulus_11(value)


def _passes_modulus_11(digits: str) -> bool:
    """True when the last of ten ASCII digits is the Modulus 11 check of the other nine."""
    return _check_digit(digits[:9]) == int(digits[9])


def nhs_number_scheme(digits: str) -> Scheme:
    """Which scheme issues a 10-digit number of this value (the table in the module doc).

    ``digits`` must already be 10 ASCII digits; the check digit is not looked at here.
    """
    number = int(digits)
    if any(first <= number <= last for first, last in (*_NHS_RANGES, _ENGLAND_3XX)):
        return "nhs"
    if number >= _TEST_FROM:
        return "test"
    if _HC[0] <= number <= _HC[1]:
        return "northern_ireland_hc"
    if _CHI[0] <= number <= _CHI[1] and _is_ddmm(digits[:4]):
        return "scotland_chi"
    return "none"


def _is_ddmm(text: str) -> bool:
    """True when DDMM is a day that exists in some year (29 February included)."""
    try:
        date(2000, int(text[2:]), int(text[:2]))  # 2000 is a leap year
    except ValueError:
        return False
    return True


def check_nhs_number(
    value: str, *, field: str = "patient.nhs_number", allow_test_range: bool = False
) -> str:
    """The canonical 10-digit form of ``value``, or RecordValidationError.

    Accepts bare digits or the printed 3-3-4 grouping with single spaces (removing those
    spaces is formatting, not correction). Then format, Modulus 11, placeholder and
    issuing range are checked (module doc); ``allow_test_range`` lets 9xx test numbers
    through, and only a test connection may set it. A CHI or H&C number raises with
    ``OTHER_SCHEME_CODE``, so a caller whose connection allows them can tell it apart.
    """
    if isinstance(value, str) and _GROUPED.fullmatch(value):
        value = value.replace(" ", "")
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        raise _error("NHS number must be 10 digits (optionally grouped 3-3-4)", field, "format")
    if not _passes_modulus_11(value):
        raise _error("NHS number fails the Modulus 11 check", field, "invalid")
    if value == value[0] * 10:
        raise _error("NHS number is a placeholder (one digit repeated)", field, "placeholder")
    _check_scheme(nhs_number_scheme(value), field, allow_test_range)
    return value


def _check_scheme(scheme: Scheme, field: str, allow_test_range: bool) -> None:
    if scheme == "nhs" or (scheme == "test" and allow_test_range):
        return
    if scheme == "test":
        raise _error(
            "NHS number is in the test range (9xx), accepted on test connections only",
            field,
            "test_range",
        )
    if scheme == "none":
        raise _error("NHS number is in no issuing scheme's range", field, "range")
    raise _error(
        "number is a Scottish CHI or Northern Ireland H&C number, not an NHS number",
        field,
        "other_scheme",
    )


def _error(reason: str, field: str, rule: str) -> RecordValidationError:
    return RecordValidationError(reason, field=field, code=f"nhs_number_{rule}")
