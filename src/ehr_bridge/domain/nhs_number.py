"""NHS number checks (10 digits, Modulus 11), done before any NHS number is stored or sent.

A wrong NHS number attaches a therapy record to someone else, so invalid numbers are
rejected (and the record quarantined), never "fixed". Error messages name the field and
the rule only: the number itself is patient data and never appears in them.
"""

from __future__ import annotations

import re
from operator import mul

from ehr_bridge.errors import RecordValidationError

_DIGITS = re.compile(r"[0-9]{10}")
#: the grouping people and letters use: "999 123 4567" (3-3-4, single spaces)
_GROUPED = re.compile(r"[0-9]{3} [0-9]{3} [0-9]{4}")
_WEIGHTS = tuple(range(10, 1, -1))
#: an ASCII digit's byte is its value plus 48: the weighted byte sum is over by this much
_ZERO_OFFSET = ord("0") * sum(_WEIGHTS)


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
    """True when ``value`` is exactly 10 digits whose last digit is the Modulus 11 check."""
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        return False
    return _passes_modulus_11(value)


def _passes_modulus_11(digits: str) -> bool:
    """True when the last of ten ASCII digits is the Modulus 11 check of the other nine."""
    return _check_digit(digits[:9]) == int(digits[9])


def check_nhs_number(value: str, *, field: str = "patient.nhs_number") -> str:
    """The canonical 10-digit form of ``value``, or RecordValidationError.

    Accepts bare digits or the printed 3-3-4 grouping with single spaces (removing those
    spaces is formatting, not correction). Anything else is a format error, and a number
    failing Modulus 11 is invalid; either way the caller quarantines the record.
    """
    if isinstance(value, str) and _GROUPED.fullmatch(value):
        value = value.replace(" ", "")
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        raise RecordValidationError(
            "NHS number must be 10 digits (optionally grouped 3-3-4)",
            field=field,
            code="nhs_number_format",
        )
    if not _passes_modulus_11(value):
        raise RecordValidationError(
            "NHS number fails the Modulus 11 check", field=field, code="nhs_number_invalid"
        )
    return value
