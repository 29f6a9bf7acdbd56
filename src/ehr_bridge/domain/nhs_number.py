"""NHS number checks (10 digits, Modulus 11), done before any NHS number is stored or sent.

A wrong NHS number attaches a therapy record to someone else, so invalid numbers are
rejected (and the record quarantined), never "fixed". Error messages name the field and
the rule only: the number itself is patient data and never appears in them.
"""

from __future__ import annotations

import re

from ehr_bridge.errors import RecordValidationError

_DIGITS = re.compile(r"[0-9]{10}")
#: the grouping people and letters use: "999 123 4567" (3-3-4, single spaces)
_GROUPED = re.compile(r"[0-9]{3} [0-9]{3} [0-9]{4}")
_WEIGHTS = range(10, 1, -1)


def _check_digit(first_nine: str) -> int | None:
    """The Modulus 11 check digit for nine digits, or None when no valid one exists (10)."""
    total = sum(int(digit) * weight for digit, weight in zip(first_nine, _WEIGHTS, strict=True))
    check = 11 - (total % 11)
    if check == 11:
        return 0
    return None if check == 10 else check


def is_valid_nhs_number(value: str) -> bool:
    """True when ``value`` is exactly 10 digits whose last digit is the Modulus 11 check."""
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        return False
    return _check_digit(value[:9]) == int(value[9])


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
    if not is_valid_nhs_number(value):
        raise RecordValidationError(
            "NHS number fails the Modulus 11 check", field=field, code="nhs_number_invalid"
        )
    return value
