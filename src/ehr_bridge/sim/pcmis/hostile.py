"""Malformed PC-MIS-style referrals, each breaking one field, so quarantine is exercised.

``break_record`` returns the mapping target the defect should be quarantined under, so a
test can check that the engine named *that* field (as the IAPTUS-style simulator does).
"""

from __future__ import annotations

from collections.abc import Callable

from ehr_bridge.sim.pcmis.records import JsonDict


def _impossible_date(record: JsonDict) -> str:
    record["DateReceived"] = "31/02/2026"
    return "received_date"


def _iso_date(record: JsonDict) -> str:
    day, month, year = record["DateReceived"].split("/")
    record["DateReceived"] = f"{year}-{month}-{day}"
    return "received_date"


def _unknown_sex(record: JsonDict) -> str:
    record["Client"]["Sex"] = "Q"
    return "patient.gender"


def _bad_nhs_number(record: JsonDict) -> str:
    number: str = record["Client"]["NHSNumber"]
    record["Client"]["NHSNumber"] = number[:-1] + str((int(number[-1]) + 1) % 10)
    return "patient.nhs_number"


def _no_client_id(record: JsonDict) -> str:
    record["Client"]["ClientId"] = None
    return "patient.local_id"


def _unknown_source(record: JsonDict) -> str:
    record["Source"] = {"Code": "WALKIN", "Description": "Walk-in"}
    return "source_of_referral"


BREAKERS: tuple[Callable[[JsonDict], str], ...] = (
    _impossible_date,
    _unknown_sex,
    _bad_nhs_number,
    _no_client_id,
    _unknown_source,
    _iso_date,
)


def break_record(record: JsonDict, index: int) -> str:
    """Break one field of ``record`` (kinds cycle with ``index``); return the target named."""
    return BREAKERS[index % len(BREAKERS)](record)
