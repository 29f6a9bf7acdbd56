"""The fast HL7 read path gives exactly what the plain one did, and survives hostile sizes.

``record.decode`` splits plain segments inline, caches delimiters and dates, and the inbox
reads stamps by position. The plain implementations they replaced are kept here as the
executable specification, and hypothesis holds the fast code to them on generated messages,
dates and stamps (values, shapes and errors).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehr_bridge.adapters.hl7v2.dates import date_positions, iso
from ehr_bridge.adapters.hl7v2.er7 import Delimiters, Er7Error, delimiters, unescape
from ehr_bridge.adapters.hl7v2.inbox import STAMP_FORMAT, Inbox, stamp_instant, stamp_text
from ehr_bridge.adapters.hl7v2.record import decode
from ehr_bridge.adapters.hl7v2.source import DropFolderSource

LONDON = ZoneInfo("Europe/London")


# --- the specification: the plain implementations ---------------------------------------
def _spec_delimiters(msh: str) -> Delimiters:
    if len(msh) < 8 or not msh.startswith("MSH"):
        raise Er7Error("MSH-2", "header too short to declare its encoding characters")
    field = msh[3]
    end = msh.find(field, 4)
    chars = msh[4:end] if end != -1 else msh[4:]
    if not 3 <= len(chars) <= 5:  # four (v2.7: five, with the truncation character)
        raise Er7Error("MSH-2", "encoding characters missing or more than five")
    if any(c.isalnum() or c.isspace() or not c.isprintable() for c in field + chars):
        raise Er7Error("MSH-2", "encoding characters not punctuation")
    every = field + chars if len(chars) > 3 else field + chars + "&"  # & when only three
    if len(set(every)) != len(every):
        raise Er7Error("MSH-2", "encoding characters repeat a delimiter")
    subcomponent = chars[3] if len(chars) > 3 else "&"
    return Delimiters(field, chars[0], chars[1], chars[2], subcomponent)


_DTM = re.compile(  # each part only after the one before it; ASCII digits only
    r"(?P<date>[0-9]{8})(?P<hour>[0-9]{2})?(?P<minute>(?<=[0-9]{10})[0-9]{2})?"
    r"(?P<second>(?<=[0-9]{12})[0-9]{2})?(?:(?<=[0-9]{14})\.(?P<fraction>[0-9]{1,4}))?"
    r"(?P<offset>[+-][0-9]{4})?"
)


def _spec_iso(value: str, zone: ZoneInfo) -> str:
    match = _DTM.fullmatch(value)
    if match is None:
        return value
    try:
        day = date(int(value[:4]), int(value[4:6]), int(value[6:8]))
        if match["hour"] is None:
            return day.isoformat()
        moment = datetime(
            day.year,
            day.month,
            day.day,
            int(match["hour"]),
            int(match["minute"] or 0),
            int(match["second"] or 0),
            int((match["fraction"] or "").ljust(6, "0")),
        )
        offset = match["offset"]
        if offset is None:
            return moment.replace(tzinfo=zone).isoformat()
        hours, minutes = int(offset[1:3]), int(offset[3:5])
        if hours > 14 or minutes > 59:
            raise ValueError("offset out of range")
        delta = timedelta(hours=hours, minutes=minutes)
        sign = -delta if offset[0] == "-" else delta
        return moment.replace(tzinfo=timezone(sign)).isoformat()
    except ValueError:
        return value


def _spec_components(raw: str, d: Delimiters) -> dict[str, Any]:
    if d.component not in raw and d.subcomponent not in raw:
        if not raw or raw == '""':
            return {}
        return {"1": unescape(raw, d) if d.escape in raw else raw}
    out: dict[str, Any] = {}
    for number, part in enumerate(raw.split(d.component), 1):
        if not part or part == '""':
            continue
        if d.subcomponent in part:
            subs = part.split(d.subcomponent)
            out[str(number)] = {
                str(i): unescape(s, d) for i, s in enumerate(subs, 1) if s and s != '""'
            }
        else:
            out[str(number)] = unescape(part, d) if d.escape in part else part
    return out


def _spec_fields(text: str, d: Delimiters) -> dict[str, Any]:
    parts = text.split(d.field)
    occurrence: dict[str, Any] = {}
    if parts[0] == "MSH":
        occurrence["1"], occurrence["2"] = [{"1": d.field}], [{"1": parts[1]}]
        parts = ["MSH", "", "", *parts[2:]]
    for number in range(1, len(parts)):
        raw = parts[number]
        if raw and raw != '""':
            pieces = raw.split(d.repetition) if d.repetition in raw else (raw,)
            occurrence[str(number)] = [_spec_components(piece, d) for piece in pieces]
    return occurrence


def _spec_decode(segments: list[str], zone: ZoneInfo, wanted: frozenset[str] | None) -> Any:
    d = _spec_delimiters(segments[0])
    parts = segments[0].split(d.field)
    version = parts[11].split(d.component)[0] if len(parts) > 11 else ""
    record: dict[str, Any] = {}
    for text in segments:
        segment_id = text[:3]
        if wanted is not None and segment_id not in wanted and segment_id != "MSH":
            continue
        occurrence = _spec_fields(text, d)
        for number, components in date_positions(version, segment_id).items():
            for repetition in occurrence.get(str(number), []):
                for component in components:
                    value = repetition.get(str(component))
                    if isinstance(value, str):
                        repetition[str(component)] = _spec_iso(value, zone)
        record.setdefault(segment_id, []).append(occurrence)
    return record


# --- generated messages -------------------------------------------------------------------
DELIMITER_SETS = ["|^~\\&", "|^~\\&#", "#^~\\&", "|^~\\", "|:~\\&", "|^~"]
DATES = ["20261103", "202611030915", "20260703091530.25", "20260703091530+0100", "20261332"]
TOKENS = ["", '""', "A1", "MR", "NHS", "x y", "\\F\\", "\\X41\\", "\\.br\\", "\\", *DATES]
SEGMENT_IDS = ["PID", "RF1", "PRD", "DG1", "NTE", "ZXX", "EVN", "OBX"]


@st.composite
def messages(draw: st.DrawFn) -> list[str]:
    declared = draw(st.sampled_from(DELIMITER_SETS))
    field, specials = declared[0], declared[1:]
    piece = st.lists(
        st.one_of(st.sampled_from(TOKENS), st.text(alphabet="ab1&^~\\#:", max_size=3)),
        max_size=4,
    ).map(lambda bits: "".join(bits))
    joiner = st.sampled_from([*specials, ""])
    value = st.lists(st.tuples(piece, joiner), max_size=4).map(
        lambda pairs: "".join(p + j for p, j in pairs)
    )
    version = draw(st.sampled_from(["2.5", "2.3", "2.8.2", "9.9", ""]))
    header = [f"MSH{field}{specials}", "IAPTUS", "RXX", "", "", draw(value), "", "REF^I12"]
    header += [draw(value), "P", version, *draw(st.lists(value, max_size=3))]
    segments = [field.join(header)]
    for _ in range(draw(st.integers(0, 5))):
        segment_id = draw(st.sampled_from(SEGMENT_IDS))
        segments.append(field.join([segment_id, *draw(st.lists(value, max_size=14))]))
    return segments


def _outcome(run: Any) -> Any:
    try:
        return run()
    except Er7Error as exc:
        return ("Er7Error", str(exc))


@settings(max_examples=400, deadline=None)
@given(segments=messages(), wanted=st.sampled_from([None, frozenset({"PID", "RF1"})]))
def test_decode_equals_the_plain_decoder(
    segments: list[str], wanted: frozenset[str] | None
) -> None:
    expected = _outcome(lambda: _spec_decode(segments, LONDON, wanted))
    assert _outcome(lambda: decode(segments, LONDON, wanted)) == expected


@given(header=st.text(alphabet="MSH|^~\\&#ab1 \t\x00", max_size=14))
def test_delimiters_equal_the_plain_check(header: str) -> None:
    for text in (header, "MSH" + header):
        expected = _outcome(lambda t=text: _spec_delimiters(t))
        assert _outcome(lambda t=text: delimiters(t)) == expected
        assert _outcome(lambda t=text: delimiters(t)) == expected  # cached: same again


DATE_TEXT = st.one_of(
    st.text(alphabet="0123456789+-.", max_size=26),
    st.sampled_from([*DATES, "19780223", "20260329010000", "20261025013000", "2026110309"]),
    st.text(
        alphabet="\u0660\u0661\u06620123456789", min_size=8, max_size=8
    ),  # not ASCII: never a DTM
)


@given(value=DATE_TEXT, zone=st.sampled_from([LONDON, ZoneInfo("UTC")]))
def test_dates_equal_the_plain_conversion(value: str, zone: ZoneInfo) -> None:
    assert iso(value, zone) == _spec_iso(value, zone)
    assert iso(value, zone) == _spec_iso(value, zone)  # cached: same again


def test_a_segment_with_more_than_a_thousand_fields_decodes() -> None:
    segments = ["MSH|^~\\&|A|B|C|D|20260101||REF^I12|1|P|2.5", "PID" + "|x^y" * 1200]
    record = decode(segments, LONDON)
    assert record["PID"][0]["1200"] == [{"1": "x", "2": "y"}]
    assert decode(["MSH|^~\\&|A", "NTE|" + "^" * 1100 + "z"], LONDON)["NTE"][0]["1"] == [
        {"1101": "z"}
    ]


def test_a_file_with_a_huge_segment_becomes_a_record_not_a_failed_pull(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "drop", tmp_path / "received", settle_seconds=0)
    inbox.ensure()
    text = "MSH|^~\\&|A|B|C|D|20260101||REF^I12|1|P|2.5\rPID" + "|x" * 1500 + "\r"
    (inbox.drop / "big.hl7").write_text(text)
    page = DropFolderSource(inbox, zone=LONDON).fetch_referrals(updated_since=None, page=None)
    assert [len(r["PID"][0]) for r in page.records] == [1500]


# --- stamps -------------------------------------------------------------------------------
STAMP_TEXT = st.one_of(
    st.builds(
        lambda y, mo, d, h, mi, s, f: f"{y:04d}{mo:02d}{d:02d}T{h:02d}{mi:02d}{s:02d}{f:06d}Z",
        st.integers(0, 9999),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 61),
        st.integers(0, 999999),
    ),
    st.text(alphabet="0123456789TZtz", min_size=20, max_size=24),
)


def _parsed(name: str) -> Any:
    try:
        return stamp_instant(name)
    except ValueError:
        return "refused"


def _spec_parsed(name: str) -> Any:
    try:
        return datetime.strptime(name[:22], STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return "refused"


@given(text=STAMP_TEXT, rest=st.sampled_from(["", "-m0000001.hl7"]))
def test_stamps_are_read_as_strptime_reads_them(text: str, rest: str) -> None:
    assert _parsed(text + rest) == _spec_parsed(text + rest)


@given(moment=st.datetimes(timezones=st.sampled_from([UTC, LONDON])))
def test_stamps_are_written_as_strftime_writes_them(moment: datetime) -> None:
    assert stamp_text(moment) == moment.astimezone(UTC).strftime(STAMP_FORMAT)


@pytest.mark.parametrize("moment", [datetime(2026, 11, 26, 10, 44, 12, 123456, tzinfo=UTC)])
def test_a_stamp_reads_back_as_its_instant(moment: datetime) -> None:
    assert stamp_instant(stamp_text(moment)) == moment
