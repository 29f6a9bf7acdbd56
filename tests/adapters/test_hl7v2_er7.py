"""ER7 text: line endings, BOM, framing, batches, delimiters, escaping both ways."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehr_bridge.adapters.hl7v2.er7 import (
    Delimiters,
    Er7Error,
    decode_bytes,
    delimiters,
    escape,
    escape_lines,
    split_messages,
    unescape,
)

SEGMENTS = ["MSH|^~\\&|A|B|||20261126||ADT^A04|1|P|2.5", "PID|1||X^^^NHS^NH", "PV1|1|O"]


@pytest.mark.parametrize("end", ["\r", "\n", "\r\n"])
@pytest.mark.parametrize("bom", ["", "\ufeff"])
def test_every_line_ending_and_a_bom_give_the_same_segments(end: str, bom: str) -> None:
    text = bom + end.join(SEGMENTS) + end
    assert split_messages(text) == [SEGMENTS]


def test_blank_lines_mllp_bytes_and_missing_final_end_are_tolerated() -> None:
    text = "\x0b" + "\r\n\r\n".join(SEGMENTS) + "\x1c\r"
    assert split_messages(text) == [SEGMENTS]


def test_mllp_framing_is_dropped_only_at_the_edges_of_a_frame() -> None:
    frame = "\x0b" + "\r".join(SEGMENTS) + "\x1c\r"
    assert split_messages(frame + frame + "\x0b" + "\r".join(SEGMENTS) + "\x1c") == [SEGMENTS] * 3
    with pytest.raises(Er7Error) as caught:
        split_messages(frame.replace("PV1|1|O", "PV1|1|\x0bO"))
    assert caught.value.where == "PV1-2"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("MSH|^~\\&|A\rPID|1\rJohn^Paul", "line 3"),
        ("MSH|^~\\&|A\rPID|1\rPIDX|1", "line 3"),
        ("MSH|^~\\&|A\r\rPID|1|\x00", "PID-2"),
        ("MSH|^~\\&|A\x7f\rPID|1", "MSH-3"),
        ("MSH|^~\\\\|A\rJohn^Paul", "MSH-2"),  # the cause: named before the line
        ("MSH|^~\\\\|A\rPID|\x00", "MSH-2"),
    ],
)
def test_lines_and_control_characters_are_refused_naming_the_place(text: str, where: str) -> None:
    with pytest.raises(Er7Error) as caught:
        split_messages(text)
    assert caught.value.where == where


def test_a_batch_file_splits_into_messages_without_its_envelope() -> None:
    second = [SEGMENTS[0].replace("|1|P|", "|2|P|"), "PID|1||Y"]
    text = "\n".join(["FHS|^~\\&", "BHS|^~\\&", *SEGMENTS, *second, "BTS|2", "FTS|1"])
    assert split_messages(text) == [SEGMENTS, second]


@pytest.mark.parametrize(
    ("text", "where"),
    [("", "MSH"), ("PID|1||X\rMSH|^~\\&|A", "MSH"), ("EVN|A04", "MSH")],
)
def test_text_that_does_not_start_with_msh_is_refused(text: str, where: str) -> None:
    with pytest.raises(Er7Error) as caught:
        split_messages(text)
    assert caught.value.where == where


def test_delimiters_come_from_msh_1_and_msh_2() -> None:
    assert delimiters("MSH|^~\\&|A") == Delimiters()
    assert delimiters("MSH#$%@!#A") == Delimiters("#", "$", "%", "@", "!")
    assert delimiters("MSH|^~\\|A").subcomponent == "&"  # three characters: & by default


@pytest.mark.parametrize("msh", ["MSH|", "MSH|AB|x", "MSH|^^\\&|A", "MSH|^~|A"])
def test_a_header_without_usable_encoding_characters_names_msh_2(msh: str) -> None:
    with pytest.raises(Er7Error) as caught:
        delimiters(msh)
    assert caught.value.where == "MSH-2"


def test_decode_bytes_reads_utf8_with_bom_and_latin1_only_when_declared() -> None:
    assert decode_bytes("\ufeffMSH|^~\\&|Siân".encode()) == "MSH|^~\\&|Siân"
    latin = "MSH|^~\\&|A|||||||||||||||8859/1\rPID|1||||Siân".encode("latin-1")
    assert decode_bytes(latin).endswith("Siân")
    with pytest.raises(Er7Error) as caught:
        decode_bytes("MSH|^~\\&|A\rPID|Siân".encode("latin-1"))
    assert caught.value.where == "MSH-18"


def test_escape_uses_the_five_standard_sequences_escape_character_first() -> None:
    assert escape("a|b^c&d~e\\f") == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"
    assert escape("\\F\\") == "\\E\\F\\E\\"  # a literal sequence stays literal
    assert escape("one\r\ntwo\nthree") == "one two three"


def test_escape_follows_the_message_delimiters() -> None:
    d = Delimiters("#", "$", "%", "@", "!")
    assert escape("a#b$c%d@e!f", d) == "a@F@b@S@c@R@d@E@e@T@f"
    assert unescape("a@F@b@S@c@R@d@E@e@T@f", d) == "a#b$c%d@e!f"


def test_escape_lines_keeps_empty_lines() -> None:
    assert escape_lines("a|\r\n\r\nb") == ["a\\F\\", "", "b"]


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("plain", "plain"),
        ("a\\.br\\b", "a\nb"),
        ("a\\X0D0A\\b", "a\r\nb"),
        ("caf\\XC3A9\\", "café"),
        ("\\H\\bold\\N\\", "bold"),
        ("dangling\\", "dangling\\"),
        ("a\\Zlocal\\b", "ab"),
        ("a\\.sp\\b", "a\nb"),
        ("a\\.sp3\\b", "a\n\n\nb"),
        ("a\\.sp+2\\b", "a\n\nb"),
        ("a\\.sp0\\b", "a\nb"),  # the line still ends
        ("a\\.sp" + "9" * 5000 + "\\b", "a" + "\n" * 10 + "b"),  # capped, no huge int
        ("a\\.ce\\b", "a\nb"),
        ("\\.in+4\\a\\.ti-4\\b\\.sk2\\c\\.fi\\\\.nf\\", "abc"),
    ],
)
def test_unescape_decodes_sequences_and_keeps_a_dangling_escape(raw: str, text: str) -> None:
    assert unescape(raw) == text


@given(st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",))))
def test_escape_then_unescape_is_the_identity(value: str) -> None:
    escaped = escape(value)
    assert not set("|^~&\r\n") & set(escaped)
    assert unescape(escaped) == value
