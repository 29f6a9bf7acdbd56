"""The drop-folder source reads HL7 v2 as v2.5.1 ch. 2 and 2A define it, or names the place.

Every file goes through the real ``DropFolderSource`` (drop folder, receive, read, decode).
What it cannot read faithfully becomes one record ``{"unreadable", "unreadable_field"}``
naming the field or line, and the pull quarantines it under that field: nothing is cut
off, guessed at or mapped into a made-up referral. Reasons carry positions, never values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.hl7v2 import create
from ehr_bridge.adapters.hl7v2.inbox import Inbox
from ehr_bridge.adapters.hl7v2.source import DropFolderSource
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.mapping import load_mapping
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.pull import pull

ROOT = Path(__file__).resolve().parents[2]
#: patient data in the messages below: never in a reason
VALUES = ("Siân", "SIÂN", "SMITH", "JOHN", "PAUL", "9434765919", "L1", "Str", "Ann")


def _msh(charset: str = "", field: str = "|", encoding: str = "^~\\&") -> str:
    fields = ["MSH" + field + encoding, "IAPTUS", "RXX", "EHR-BRIDGE", "IESO01", "20261126"]
    fields += ["", "REF^I12^REF_I12", "C-1", "P", "2.5", "", "", "AL", "NE", "GBR", charset]
    return field.join(fields)


def _message(*, charset: str = "", name: str = "SMITH^JOHN", extra: tuple[str, ...] = ()) -> str:
    return "\r".join(
        [
            _msh(charset),
            "RF1|A|||||SR1^IAPTUS|20261120",
            f"PID|1||9434765919^^^NHS^NH~L1^^^RXX^MR||{name}||19850214|F",
            *extra,
        ]
    )


def _source(tmp_path: Path, segments: tuple[str, ...] | None = None) -> DropFolderSource:
    inbox = Inbox(tmp_path / "drop", tmp_path / "drop" / "received", settle_seconds=0)
    inbox.ensure()
    return DropFolderSource(inbox, zone=ZoneInfo("Europe/London"), segments=segments)


def _read(
    tmp_path: Path, data: str | bytes, segments: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """The records the source makes of one dropped file."""
    source = _source(tmp_path, segments)
    (source.inbox.drop / "m.hl7").write_bytes(data.encode() if isinstance(data, str) else data)
    return source.fetch_referrals(updated_since=None, page=None).records


def _refused(tmp_path: Path, data: str | bytes, **kwargs: Any) -> tuple[str, str]:
    """(where, reason) of a file the source cannot read; the reason names no value."""
    (record,) = _read(tmp_path, data, **kwargs)
    assert set(record) == {"updated_at", "file", "unreadable", "unreadable_field"}, record
    reason = record["unreadable"]
    assert reason.startswith(record["unreadable_field"] + ": ")
    assert not any(value in reason for value in VALUES), reason
    return record["unreadable_field"], reason


def _name(record: dict[str, Any]) -> dict[str, str]:
    return dict(record["PID"][0]["5"][0])


# --- MSH-18: the character set ------------------------------------------------------------
@pytest.mark.parametrize(
    ("charset", "encoding"),
    [
        ("8859/1", "latin-1"),
        ("8859/15", "iso8859_15"),
        ("UNICODE UTF-8", "utf-8"),
        ("UNICODE", "utf-8"),
        ("UTF-8", "utf-8"),
        ("unicode utf-8", "utf-8"),  # table 0211 is upper case; a lower-case label is the same
        ("8859/1~ISO IR87", "latin-1"),  # the first repetition is the message's set
        ("", "utf-8"),  # none declared: UTF-8
    ],
)
def test_text_is_read_in_the_character_set_msh_18_declares(
    tmp_path: Path, charset: str, encoding: str
) -> None:
    (record,) = _read(tmp_path, _message(charset=charset, name="SMITH^Siân").encode(encoding))
    assert _name(record) == {"1": "SMITH", "2": "Siân"}


def test_8859_15_reads_the_euro_sign_where_8859_1_has_another_character(tmp_path: Path) -> None:
    text = _message(charset="8859/15", name="SMITH^€").encode("iso8859_15")
    (record,) = _read(tmp_path, text)
    assert _name(record)["2"] == "€"


def test_msh_18_is_read_with_the_declared_field_separator(tmp_path: Path) -> None:
    pid = "PID#1##L1^^^RXX^MR##SMITH^Siân|x"  # "|" is text here
    text = "\r".join([_msh("8859/1", field="#"), pid]).encode("latin-1")
    (record,) = _read(tmp_path, text)
    assert record["MSH"][0]["18"] == [{"1": "8859/1"}]
    assert _name(record) == {"1": "SMITH", "2": "Siân|x"}


@pytest.mark.parametrize(
    ("charset", "data"),
    [
        ("ASCII", "Siân".encode("latin-1")),  # ASCII declared, a byte above 127
        ("ASCII", "Siân".encode()),
        ("UNICODE UTF-8", "Siân".encode("latin-1")),  # declared UTF-8, not UTF-8
        ("UTF-8", b"\xff\xfe"),
        ("", "Siân".encode("latin-1")),  # nothing declared: must be UTF-8
        ("8859/1", "Siân".encode()),  # valid UTF-8 is never Latin text: the label is wrong
        ("BIG-5", "Siân".encode()),  # a table 0211 set this reader does not read
        ("GBR", "Siân".encode()),  # not a character set (the country code, one field late)
    ],
)
def test_bytes_that_are_not_text_in_the_declared_set_name_msh_18(
    tmp_path: Path, charset: str, data: bytes
) -> None:
    text = _message(charset=charset).encode("ascii").replace(b"SMITH", data)
    assert _refused(tmp_path, text)[0] == "MSH-18"


def test_8859_1_elsewhere_in_the_header_declares_nothing(tmp_path: Path) -> None:
    text = _message().replace("IAPTUS", "8859/1").replace("SMITH", "Siân").encode("latin-1")
    assert _refused(tmp_path, text)[0] == "MSH-18"


def test_a_byte_order_mark_on_text_declared_8859_names_msh_18(tmp_path: Path) -> None:
    text = b"\xef\xbb\xbf" + _message(charset="8859/1", name="Siân").encode("latin-1")
    assert _refused(tmp_path, text)[0] == "MSH-18"


def test_ascii_text_is_read_whatever_the_label(tmp_path: Path) -> None:
    for n, charset in enumerate(("ASCII", "8859/2", "BIG-5", "GBR")):  # all read ASCII alike
        (record,) = _read(tmp_path / str(n), _message(charset=charset))
        assert _name(record) == {"1": "SMITH", "2": "JOHN"}


# --- MSH-2: the delimiters ----------------------------------------------------------------
@pytest.mark.parametrize(
    "encoding",
    ["^~\\^", "^^\\&", "^~", "^~\\&#!", "^ \\&", "^~\\&~", "^~&"],
    ids=["repeat", "repeat-first", "too-few", "too-many", "space", "truncation-repeats", "3+&"],
)
def test_a_header_whose_delimiters_cannot_be_read_names_msh_2(
    tmp_path: Path, encoding: str
) -> None:
    text = _message().replace("^~\\&", encoding, 1)
    assert _refused(tmp_path, text)[0] == "MSH-2"


def test_msh_2_is_named_before_msh_18_when_the_header_cannot_be_split(tmp_path: Path) -> None:
    text = _message(charset="8859/1", name="Siân").replace("^~\\&", "^~\\^", 1)
    assert _refused(tmp_path, text.encode("latin-1"))[0] == "MSH-2"


# --- segments -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tail", "line"),
    [
        ("PID|1||L1^^^RXX^MR||SMITH^JOHN\rPAUL", 4),  # a raw CR inside PID-5
        ("PID|1||L1^^^RXX^MR|||||||1 High\rStr|Leeds", 4),  # ... inside the address
        ("NTE|1||Ann\rJohn^Paul", 4),
        ("PIDX|1||L1", 3),  # a four-character id
        ("pid|1||L1", 3),  # ids are upper case
        ("1ID|1||L1", 3),  # and start with a letter
        ("PID^1^^L1", 3),  # followed by the field separator
        ("PI", 3),
        ("NTE|1\r\rPID^1", 5),  # blank lines count: line N of the file's message
    ],
)
def test_a_line_that_is_not_a_segment_names_its_line(tmp_path: Path, tail: str, line: int) -> None:
    text = "\r".join([_msh(), "RF1|A|||||SR1^IAPTUS|20261120", tail])
    assert _refused(tmp_path, text) == (f"line {line}", _not_a_segment(line))


def _not_a_segment(line: int, batch: str = "") -> str:
    return f"line {line}: not a segment: no segment id and field separator{batch}"


def test_segments_without_fields_and_z_segments_are_segments(tmp_path: Path) -> None:
    (record,) = _read(tmp_path, _message(extra=("ZU1|x", "Z01|y", "NTE")))
    assert record["ZU1"] == [{"1": [{"1": "x"}]}] and record["Z01"] == [{"1": [{"1": "y"}]}]
    assert record["NTE"] == [{}]


def test_line_endings_bom_framing_blank_lines_and_envelopes_are_tolerated(tmp_path: Path) -> None:
    segments = _message().split("\r")
    files = {
        "lf": "\n".join(segments),
        "crlf-bom": "\ufeff" + "\r\n".join(segments) + "\r\n",
        "mllp": "\x0b" + "\r".join(segments) + "\x1c\r",
        "blank": "\r\r".join(segments) + "\r \r\t\r",
        "batch": "\r".join(["FHS|^~\\&", "BHS|^~\\&", *segments, "BTS|1", "FTS|1"]),
    }
    for name, text in files.items():
        (record,) = _read(tmp_path / name, text)
        assert _name(record) == {"1": "SMITH", "2": "JOHN"}, name


def test_a_bad_line_in_a_batch_names_its_line_and_message(tmp_path: Path) -> None:
    text = "\r".join([_message(), _msh(), "RF1|A|||||SR2^IAPTUS|20261120", "Str|x"])
    batch = " (message 2 of the batch)"
    assert _refused(tmp_path, text) == ("line 3", _not_a_segment(3, batch))


# --- control characters -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("SMI\x00TH", "PID-5"),  # NUL
        ("SMITH^JO\x1bHN", "PID-5"),  # ESC (an ISO 2022 switch this reader does not read)
        ("SMITH\x7f", "PID-5"),  # DEL
        ("SMITH\x0b", "PID-5"),  # VT inside a field is not MLLP framing
        ("SMITH\x1cJOHN", "PID-5"),  # nor is FS
        ("SMITH\x0c", "PID-5"),  # form feed
        ("SMITH\u0085", "PID-5"),  # a C1 control (NEL) in UTF-8
        ("SMITH||19850214|F|||\x01", "PID-11"),
    ],
)
def test_a_control_character_in_a_field_names_the_field(
    tmp_path: Path, name: str, where: str
) -> None:
    where_found, reason = _refused(tmp_path, _message(name=name))
    assert where_found == where
    assert reason == f"{where}: a control character, which no HL7 text type allows"


@pytest.mark.parametrize(("number", "where"), [(3, "MSH-3"), (10, "MSH-10"), (18, "MSH-18")])
def test_msh_fields_are_numbered_as_hl7_counts_them(
    tmp_path: Path, number: int, where: str
) -> None:
    msh, rest = _message(charset="ASCII").split("\r", 1)
    parts = msh.split("|")
    parts[number - 1] += "\x00"  # parts[0] is "MSH", parts[1] MSH-2: MSH-n is part n - 1
    assert _refused(tmp_path, "|".join(parts) + "\r" + rest)[0] == where


def test_a_control_character_in_the_second_message_of_a_batch_names_the_field_and_message(
    tmp_path: Path,
) -> None:
    text = "\r".join([_message(), _message(name="SMITH^\x00")])
    assert _refused(tmp_path, text)[1].endswith(" (message 2 of the batch)")


def test_a_tab_is_text(tmp_path: Path) -> None:
    (record,) = _read(tmp_path, _message(name="SMITH\tJONES^JOHN"))
    assert _name(record)["1"] == "SMITH\tJONES"


def test_a_control_character_in_a_latin_1_message_names_the_field(tmp_path: Path) -> None:
    text = _message(charset="8859/1", name="SMITH^Siân\x85").encode("latin-1")  # cp1252 "…"
    assert _refused(tmp_path, text)[0] == "PID-5"


# --- one patient per message --------------------------------------------------------------
def test_two_pid_segments_name_pid(tmp_path: Path) -> None:
    text = _message(extra=("PID|2||L2^^^RXX^MR||JONES^ANN",))
    assert _refused(tmp_path, text) == (
        "PID",
        "PID: more than one PID segment (one patient per message)",
    )


def test_two_pids_are_not_counted_when_pid_is_not_decoded(tmp_path: Path) -> None:
    text = _message(extra=("PID|2||L2^^^RXX^MR||JONES^ANN",))
    (record,) = _read(tmp_path, text, segments=("MSH", "RF1"))
    assert set(record) == {"updated_at", "file", "MSH", "RF1"}


# --- formatted text -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("one\\.br\\two", "one\ntwo"),
        ("one\\.sp\\two", "one\ntwo"),
        ("one\\.sp2\\two", "one\n\ntwo"),
        ("one\\.sp 3\\two", "one\n\n\ntwo"),
        ("one\\.sp999999\\two", "one" + "\n" * 10 + "two"),  # capped
        ("one\\.ce\\TITLE", "one\nTITLE"),
        ("\\.in+4\\\\.ti-2\\one\\.sk3\\two\\.fi\\\\.nf\\", "onetwo"),  # layout: no text
    ],
)
def test_formatted_text_sequences_become_line_breaks_or_nothing(
    tmp_path: Path, raw: str, text: str
) -> None:
    (record,) = _read(tmp_path, _message(extra=(f"NTE|1||{raw}",)))
    assert record["NTE"][0]["3"] == [{"1": text}]


# --- through the pull: quarantined under the field the source names -----------------------
def test_the_pull_quarantines_each_unreadable_file_under_the_field_named(tmp_path: Path) -> None:
    files = {
        "a-latin1.hl7": _message(name="SMITH^Siân").encode("latin-1"),
        "b-msh2.hl7": _message().replace("^~\\&", "^~\\^", 1).encode(),
        "c-cut.hl7": _message(name="SMITH^JOHN\rPAUL").encode(),
        "d-nul.hl7": _message(name="SMITH^\x00").encode(),
        "e-two-pids.hl7": _message(extra=("PID|2||L2^^^RXX^MR||JONES^ANN",)).encode(),
    }
    expected = {"a": "MSH-18", "b": "MSH-2", "c": "line 4", "d": "PID-5", "e": "PID"}
    adapter = create(
        {"drop_folder": "in", "settle_seconds": 0},
        base_dir=tmp_path,
        key="trust",
        provider_code="IESO01",
    )
    for order, (name, data) in enumerate(sorted(files.items())):
        (tmp_path / "in" / name).write_bytes(data)
        os.utime(tmp_path / "in" / name, (1_700_000_000 + order, 1_700_000_000 + order))
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    conn = Connection(
        name="standard",
        mapping=load_mapping(ROOT / "mappings" / "hl7v2-ref-i12.yaml"),
        source=adapter,
        writer=adapter,
        provider=FolderProvider(tmp_path / "provider"),
        provider_ref=ProviderRef("IESO01", "Online therapy provider"),
        test_connection=True,
    )
    try:
        counts = pull(conn, store)
        rows = store.quarantine_rows(connection=conn.name, state=None)
    finally:
        store.close()
    assert counts.seen == len(files) and counts.quarantined == len(files)
    found = {json.loads(r.payload)["file"].split("/")[-1].split("-", 1)[1][0]: r for r in rows}
    assert {k: r.field for k, r in found.items()} == expected
    assert {r.code for r in rows} == {"unreadable"}
    assert not any(value in r.reason for r in rows for value in VALUES)
