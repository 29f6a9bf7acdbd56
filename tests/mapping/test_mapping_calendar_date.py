"""``calendar_date``: fields that mean a day, sent as a date or as a timestamp of any precision.

HL7 v2 sends a date of birth (PID-7) and the referral's dates (RF1-7, RF1-9) as DT or DTM
(ch. 2A): ``19850314``, ``198503140930``, ``19850314000000+0100``... The adapter makes each
DTM an ISO timestamp (offset-less ones in the sender's zone); ``calendar_date`` gives the
day it names. The mapping tests run real messages through the drop-folder source.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ehr_bridge.adapters.hl7v2.inbox import Inbox
from ehr_bridge.adapters.hl7v2.source import DropFolderSource
from ehr_bridge.errors import MappingError
from ehr_bridge.mapping import Mapping, load_mapping
from ehr_bridge.mapping.transforms import TRANSFORMS, TransformError, bind

ROOT = Path(__file__).resolve().parents[2]
REFUSED = "expected a calendar date (YYYY-MM-DD or a timestamp)"


def calendar_date(value: Any) -> Any:
    return bind("calendar_date", {})(value)


# --- the transform ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "day"),
    [
        ("1985-03-14", "1985-03-14"),  # a date stays as it is
        (" 1985-03-14 ", "1985-03-14"),
        ("1985-03-14T09:30:00+00:00", "1985-03-14"),
        ("2026-07-01T23:30:00+00:00", "2026-07-02"),  # 00:30 BST: London's next day
        ("2026-07-01T23:30:00Z", "2026-07-02"),
        ("2026-11-10T23:30:00+00:00", "2026-11-10"),  # GMT: the same day
        ("2026-11-10T00:30:00+01:00", "2026-11-09"),  # 23:30 GMT the day before
        ("1985-03-14T00:00:00+01:00", "1985-03-14"),  # midnight: a date, as written
        ("1985-03-14T00:00:00-05:00", "1985-03-14"),
        ("1985-03-14T00:00:00.000000+02:00", "1985-03-14"),
        ("1985-03-14T00:00:00.500000+02:00", "1985-03-13"),  # not exactly midnight
        (date(1985, 3, 14), "1985-03-14"),
        (datetime(2026, 7, 1, 23, 30, tzinfo=UTC), "2026-07-02"),
        (datetime(1985, 3, 14, tzinfo=timezone(timedelta(hours=1))), "1985-03-14"),
    ],
)
def test_a_date_or_a_timestamp_gives_the_day_it_names(value: Any, day: str) -> None:
    assert calendar_date(value) == day


@pytest.mark.parametrize(
    "value",
    ["1985", "198503", "1985-03", "19850314", "yesterday", "", "1985-03-14T09", "2026-W27-3"],
)
def test_partial_precision_and_garbage_are_refused(value: str) -> None:
    with pytest.raises(TransformError) as caught:
        calendar_date(value)
    assert str(caught.value) == REFUSED


@pytest.mark.parametrize("value", ["2026-02-30", "2026-07-01T23:30:00", 19850314, ["1985-03-14"]])
def test_an_impossible_date_an_offset_less_timestamp_and_non_text_are_refused(value: Any) -> None:
    with pytest.raises(TransformError) as caught:
        calendar_date(value)
    assert "1985" not in str(caught.value) and "2026" not in str(caught.value)


def test_the_transform_is_registered_with_a_summary() -> None:
    assert "midnight" in TRANSFORMS["calendar_date"].summary


# --- through the HL7 mapping ----------------------------------------------------------------
@pytest.fixture(scope="module")
def mapping() -> Mapping:
    return load_mapping(ROOT / "mappings" / "hl7v2-ref-i12.yaml")


def _message(*, birth: str = "19850214", effective: str = "20261120", process: str = "") -> str:
    return "\r".join(
        [
            "MSH|^~\\&|IAPTUS|RXX|EHR-BRIDGE|IESO01|20261126093000+0000||REF^I12^REF_I12|C-1|P|2.5.1",
            f"RF1|A|||||SR1^IAPTUS|{effective}||{process}|A1",
            "PRD|RT|IESO DIGITAL HEALTH|||||IESO01^ODS",
            f"PID|1||9434765919^^^NHS^NH~L1^^^RXX^MR||SMITH^JOHN||{birth}|M",
        ]
    )


def _record(tmp_path: Path, text: str) -> dict[str, Any]:
    """The message as the drop-folder source hands it to the mapping."""
    inbox = Inbox(tmp_path / "drop", tmp_path / "drop" / "received", settle_seconds=0)
    inbox.ensure()
    (inbox.drop / "m.hl7").write_text(text)
    source = DropFolderSource(inbox, zone=ZoneInfo("Europe/London"))
    (record,) = source.fetch_referrals(updated_since=None, page=None).records
    return record


@pytest.mark.parametrize(
    ("sent", "day"),
    [
        ("19850314", "1985-03-14"),  # DT
        ("198503140930", "1985-03-14"),  # DTM to the minute, no offset (the sender's zone)
        ("19850314000000+0100", "1985-03-14"),  # a date written as a DTM: not 13 March
        ("19850314000000+0000", "1985-03-14"),
        ("1985031400", "1985-03-14"),  # to the hour, midnight
        ("19850314+0100", "1985-03-14"),  # a date with an offset
        ("19850614233000-0500", "1985-06-15"),  # 05:30 BST in London
    ],
)
def test_pid_7_at_any_precision_gives_the_date_of_birth(
    mapping: Mapping, tmp_path: Path, sent: str, day: str
) -> None:
    facts = mapping.referral_facts(_record(tmp_path, _message(birth=sent)))
    assert facts.patient.birth_date == date.fromisoformat(day)


def test_rf1_dates_sent_as_timestamps_give_their_london_dates(
    mapping: Mapping, tmp_path: Path
) -> None:
    text = _message(effective="20260701233000+0000", process="2026111009")
    facts = mapping.referral_facts(_record(tmp_path, text))
    assert facts.received_date == date(2026, 7, 2)  # 00:30 BST
    assert facts.referred_on_date == date(2026, 11, 10)  # hour precision


@pytest.mark.parametrize(
    ("change", "field", "source"),
    [
        ({"birth": "198503"}, "patient.birth_date", 'PID[0]."7"'),
        ({"birth": "1985"}, "patient.birth_date", 'PID[0]."7"'),
        ({"effective": "202607"}, "received_date", 'RF1[0]."7"'),
        ({"process": "2026"}, "referred_on_date", 'RF1[0]."9"'),
    ],
)
def test_a_partial_date_is_refused_naming_the_rules_field(
    mapping: Mapping, tmp_path: Path, change: dict[str, str], field: str, source: str
) -> None:
    with pytest.raises(MappingError) as caught:
        mapping.referral_facts(_record(tmp_path, _message(**change)))
    assert caught.value.field == field
    assert source in caught.value.safe_message and REFUSED in caught.value.safe_message
    assert next(iter(change.values())) not in caught.value.safe_message
