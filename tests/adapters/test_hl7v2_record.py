"""A message as the mapping's record: shape, unescaping, dates, and a third-party cross-check."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import hl7
import pytest

from ehr_bridge.adapters.hl7v2.dates import date_positions, iso
from ehr_bridge.adapters.hl7v2.er7 import decode_bytes, split_messages
from ehr_bridge.adapters.hl7v2.record import control_id, decode, message_type

LONDON = ZoneInfo("Europe/London")
SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7v2"
MESSAGE = "\r".join(
    [
        "MSH|^~\\&|IAPTUS|RXX|EHR-BRIDGE|IESO01|20260715091500||REF^I12^REF_I12|C-1|P|2.5",
        'RF1|A^Accepted^HL70283||||||20260710||""|A1^GP^99SOR',
        "PID|1||9434765919^^^NHS&2.16.840.1.113883.2.1.4.1&ISO^NH~L1^^^RXX^MR||"
        "O\\S\\BRIEN^SIÂN\\T\\JO||19850214|F",
        "NTE|1||first",
        "NTE|2||second",
        "ZXX|1|20260101",
    ]
)


def _record(text: str = MESSAGE, wanted: frozenset[str] | None = None) -> dict:
    (segments,) = split_messages(text)
    return decode(segments, LONDON, wanted)


def test_fields_repetitions_and_components_are_numbered_from_one() -> None:
    pid = _record()["PID"][0]
    assert pid["3"][1] == {"1": "L1", "4": "RXX", "5": "MR"}
    assert pid["8"] == [{"1": "F"}]
    assert "2" not in pid and "4" not in pid  # empty fields are left out


def test_subcomponents_become_a_map_and_values_are_unescaped() -> None:
    pid = _record()["PID"][0]
    assert pid["3"][0]["4"] == {"1": "NHS", "2": "2.16.840.1.113883.2.1.4.1", "3": "ISO"}
    assert pid["5"][0] == {"1": "O^BRIEN", "2": "SIÂN&JO"}


def test_msh_keeps_hl7_numbering() -> None:
    msh = _record()["MSH"][0]
    assert msh["1"] == [{"1": "|"}] and msh["2"] == [{"1": "^~\\&"}]
    assert msh["3"] == [{"1": "IAPTUS"}] and msh["10"] == [{"1": "C-1"}]
    assert message_type(_record()) == "REF^I12" and control_id(_record()) == "C-1"


def test_repeated_segments_keep_their_order_and_explicit_null_is_left_out() -> None:
    record = _record()
    assert [n["3"][0]["1"] for n in record["NTE"]] == ["first", "second"]
    assert "9" not in record["RF1"][0]


def test_dates_are_iso_8601_using_the_version_dictionary() -> None:
    record = _record()
    assert record["MSH"][0]["7"] == [{"1": "2026-07-15T09:15:00+01:00"}]  # BST, no offset sent
    assert record["RF1"][0]["7"] == [{"1": "2026-07-10"}]
    assert record["PID"][0]["7"] == [{"1": "1985-02-14"}]
    assert record["ZXX"][0]["2"] == [{"1": "20260101"}]  # a Z segment has no dictionary


def test_only_the_wanted_segments_are_decoded_and_msh_always_is() -> None:
    record = _record(wanted=frozenset({"PID"}))
    assert set(record) == {"MSH", "PID"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20261103", "2026-11-03"),
        ("202611030915", "2026-11-03T09:15:00+00:00"),
        ("20260703091530", "2026-07-03T09:15:30+01:00"),
        ("20260703091530.25", "2026-07-03T09:15:30.250000+01:00"),
        ("202607030915-0500", "2026-07-03T09:15:00-05:00"),
        ("2026110309", "2026-11-03T09:00:00+00:00"),
        ("2026", "2026"),  # not a whole date: left for the mapping to refuse
        ("20261331", "20261331"),
        ("20261103+9999", "2026-11-03"),  # date only: the offset does not matter
        ("202611030915+9999", "202611030915+9999"),
        ("yesterday", "yesterday"),
    ],
)
def test_iso_conversion_keeps_what_it_cannot_read(value: str, expected: str) -> None:
    assert iso(value, LONDON) == expected


def test_date_positions_cover_ts_in_old_versions_and_dtm_leaves_in_new_ones() -> None:
    assert 1 in date_positions("2.3", "PID")[7]  # TS.1 is typed ST before 2.5
    assert date_positions("2.8", "MSH")[7] == frozenset({1})  # MSH-7 is a DTM leaf
    assert 7 in date_positions("9.9", "CX") or date_positions("9.9", "PID")  # unknown -> 2.5
    assert date_positions("2.5", "ZXX") == {}


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.hl7")), ids=lambda p: p.name)
def test_python_hl7_reads_the_same_identifiers_as_our_splitter(path: Path) -> None:
    """A third-party parser (python-hl7) agrees with ours on MSH and PID-3 of every sample."""
    text = decode_bytes(path.read_bytes())
    (segments,) = split_messages(text)
    ours = decode(segments, LONDON)
    theirs = hl7.parse("\r".join(segments))
    assert theirs["MSH.F10"] == ours["MSH"][0]["10"][0]["1"]
    assert theirs["MSH.F9.R1.C1"] == ours["MSH"][0]["9"][0]["1"]
    for number, repetition in enumerate(ours.get("PID", [{}])[0].get("3", []), 1):
        assert theirs[f"PID.F3.R{number}.C1"] == repetition.get("1", "")
