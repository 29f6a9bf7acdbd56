"""Malformed referrals the trust side really produces, so quarantine paths get exercised.

Each hostile kind breaks exactly one field of an otherwise good referral and records the
JSON path it broke (``HostileInfo.field``), so a test can assert that the engine
quarantined that record *for that field*. ``HOSTILE_KINDS`` is the cycle order used by the
generator; ``HOSTILE_FIELDS`` says which path each kind breaks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class HostileInfo:
    """Which record is hostile, how, and the field path a validator should name."""

    kind: str
    field: str
    #: the record's id, or None for the kind that removes the id
    referral_id: str | None
    #: the state's key for the record: the id, or a ``~no-id-...`` marker when it has none
    key: str


def _nhs_mod11(record: JsonDict, variant: int, now: datetime) -> None:
    patient = record["patient"]
    number: str = patient["nhs_number"]
    if variant % 2 == 0:
        patient["nhs_number"] = number[:9] + str((int(number[9]) + 1) % 10)
    else:
        patient["nhs_number"] = _prefix_with_check_ten(number[:9]) + "0"


def _prefix_with_check_ten(first_nine: str) -> str:
    """Nine digits whose Modulus 11 check would be 10: numbers that are never issued."""
    for last in range(10):
        for before in range(10):
            candidate = first_nine[:7] + str(before) + str(last)
            total = sum(int(d) * w for d, w in zip(candidate, range(10, 1, -1), strict=True))
            if total % 11 == 1:
                return candidate
    raise AssertionError("weights 3 and 2 reach every residue")  # pragma: no cover


def _nhs_length(record: JsonDict, variant: int, now: datetime) -> None:
    number: str = record["patient"]["nhs_number"]
    record["patient"]["nhs_number"] = number[:9] if variant % 2 == 0 else number + "0"


def _nhs_chars(record: JsonDict, variant: int, now: datetime) -> None:
    number: str = record["patient"]["nhs_number"]
    record["patient"]["nhs_number"] = (
        number[:6] + "O" + number[7:] if variant % 2 == 0 else number[:9] + "X"
    )


def _received_missing(record: JsonDict, variant: int, now: datetime) -> None:
    del record["received_date"]


def _received_unparseable(record: JsonDict, variant: int, now: datetime) -> None:
    record["received_date"] = ("31/02/2026", "yesterday", "2026-02-31")[variant % 3]


def _source_unknown(record: JsonDict, variant: int, now: datetime) -> None:
    record["source_of_referral"] = "Z9"


def _patient_missing(record: JsonDict, variant: int, now: datetime) -> None:
    del record["patient"]


def _local_id_missing(record: JsonDict, variant: int, now: datetime) -> None:
    del record["patient"]["local_id"]


def _birth_future(record: JsonDict, variant: int, now: datetime) -> None:
    born = date.fromisoformat(record["patient"]["birth_date"])
    typo = date(now.year + 50 + variant % 5, born.month, min(born.day, 28))
    record["patient"]["birth_date"] = typo.isoformat()


def _gender_unknown(record: JsonDict, variant: int, now: datetime) -> None:
    record["patient"]["gender"] = ("4", "Z")[variant % 2]


def _received_wrong_type(record: JsonDict, variant: int, now: datetime) -> None:
    record["received_date"] = int(record["received_date"].replace("-", ""))


def _patient_wrong_type(record: JsonDict, variant: int, now: datetime) -> None:
    record["patient"] = record["patient"]["local_id"]


def _id_missing(record: JsonDict, variant: int, now: datetime) -> None:
    del record["id"]


_Breaker = Callable[[JsonDict, int, datetime], None]

_KINDS: dict[str, tuple[str, _Breaker]] = {
    "nhs_number_mod11": ("patient.nhs_number", _nhs_mod11),
    "nhs_number_length": ("patient.nhs_number", _nhs_length),
    "nhs_number_chars": ("patient.nhs_number", _nhs_chars),
    "received_date_missing": ("received_date", _received_missing),
    "received_date_unparseable": ("received_date", _received_unparseable),
    "source_of_referral_unknown": ("source_of_referral", _source_unknown),
    "patient_missing": ("patient", _patient_missing),
    "patient_local_id_missing": ("patient.local_id", _local_id_missing),
    "birth_date_future": ("patient.birth_date", _birth_future),
    "gender_unknown": ("patient.gender", _gender_unknown),
    "received_date_wrong_type": ("received_date", _received_wrong_type),
    "patient_wrong_type": ("patient", _patient_wrong_type),
    "id_missing": ("id", _id_missing),
}

#: every hostile kind, in the order the generator cycles through them
HOSTILE_KINDS: tuple[str, ...] = tuple(_KINDS)
#: the JSON path each kind breaks
HOSTILE_FIELDS: dict[str, str] = {kind: path for kind, (path, _) in _KINDS.items()}


def break_record(record: JsonDict, kind: str, *, variant: int, now: datetime) -> HostileInfo:
    """Break one field of ``record`` in place; ``variant`` picks among a kind's flavours.

    Raises:
        KeyError: for a kind not in ``HOSTILE_KINDS``.
    """
    path, breaker = _KINDS[kind]
    referral_id = str(record["id"])
    breaker(record, variant, now)
    keyed = "id" in record
    return HostileInfo(
        kind=kind,
        field=path,
        referral_id=referral_id if keyed else None,
        key=referral_id if keyed else f"~no-id-{referral_id}",
    )
