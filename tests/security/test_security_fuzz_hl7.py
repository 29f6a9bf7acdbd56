"""Fuzz the HL7 v2 reader, and prove no value can break out of its field in what we build."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st
from security_fuzz_budget import FUZZ

from ehr_bridge.adapters.hl7v2.build import Header, build
from ehr_bridge.adapters.hl7v2.er7 import (
    DEFAULT,
    Er7Error,
    decode_bytes,
    escape,
    split_messages,
    unescape,
)
from ehr_bridge.adapters.hl7v2.record import decode
from ehr_bridge.domain.referral import ProviderRef, build_referral_resources
from ehr_bridge.errors import RecordError
from ehr_bridge.mapping import load_mapping

ROOT = Path(__file__).resolve().parents[2]
MAPPING = load_mapping(ROOT / "mappings" / "hl7v2-ref-i12.yaml")
SAMPLES = [p.read_bytes() for p in sorted((ROOT / "fixtures" / "hl7v2").glob("*REF-I1*.hl7"))]
ZONE = ZoneInfo("Europe/London")
HL7_CHARS = st.sampled_from([*"|^~\\&\r\n \x0b\x1c", "MSH", "PID", "\\X0D\\", "\\E\\"])


@st.composite
def hostile_messages(draw: st.DrawFn) -> bytes:
    """A real REF^I12 with delimiters, segment ends and junk spliced in, or bytes at random."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    text = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(text)))
        junk = draw(HL7_CHARS | st.text(max_size=6)).encode("utf-8", "surrogatepass")
        cut = draw(st.integers(0, 3))
        text[at : at + cut] = junk
    return bytes(text)


def _read(data: bytes) -> list[dict[str, Any]] | str:
    """What the drop-folder source makes of a file: records, or the reason it is unreadable."""
    try:
        return [decode(m, ZONE) for m in split_messages(decode_bytes(data))]
    except Er7Error as exc:
        return str(exc)


@FUZZ
@given(hostile_messages())
def test_fuzz_any_hl7_file_is_records_or_an_unreadable_reason(data: bytes) -> None:
    read = _read(data)
    if isinstance(read, str):
        assert read
        return
    for record in read:
        try:
            facts = MAPPING.referral_facts(record)
            build_referral_resources(
                "fuzz", ProviderRef("IESO01", "P"), facts, allow_test_range=True
            )
        except RecordError as exc:
            assert exc.safe_message and exc.code


LINE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=60
)


@FUZZ
@given(LINE_TEXT)
def test_fuzz_escaping_round_trips_every_value(value: str) -> None:
    escaped = escape(value)
    assert not any(c in escaped for c in "|^~&\r\n")
    assert unescape(escaped) == value


@FUZZ
@given(
    text=st.lists(LINE_TEXT, min_size=1, max_size=4).map("\n".join),
    referral=LINE_TEXT.filter(str.strip),
    author=LINE_TEXT,
)
def test_fuzz_a_note_cannot_add_segments_or_fields_to_the_mdm_we_build(
    text: str, referral: str, author: str
) -> None:
    payload = {
        "client_reference": "ref-1",
        "referral_id": referral,
        "authored_at": datetime(2026, 3, 1, 18, 30, tzinfo=UTC),
        "text": text,
        "author": author or None,
    }
    _, message = build("clinical_note", payload, Header())
    segments = [s for s in message.split("\r") if s]
    assert [s[:3] for s in segments] == ["MSH", "EVN", "PID", "PV1", "TXA", "OBX"]
    obx = segments[-1].split(DEFAULT.field)
    lines = [unescape(line) for line in obx[5].split(DEFAULT.repetition)]
    assert "\n".join(lines) == text
    txa = segments[4].split(DEFAULT.field)
    assert unescape(txa[14]) == referral
