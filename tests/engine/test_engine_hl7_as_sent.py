"""HL7 v2 as trusts really send it, through the real pull: what is stored, and what is refused.

Each message is a legal or broken variant of one UK REF^I12 (the fixture a trust's engine
would send), dropped into the drop folder or sent over MLLP with python-hl7's client, then
pulled by the real flow into SQLite. Legal variants of the standard (DTM with a time or an
offset, an NHS number with its authority but no type code) are stored with the calendar
date and identifier the sender meant; broken ones are quarantined with a reason naming the
field or line that is wrong (never MSH-9 for a character-set or delimiter fault), and
never mapped into a made-up referral.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hl7.client import MLLPClient

from ehr_bridge.adapters.hl7v2 import Hl7v2Adapter
from ehr_bridge.sync.pull import pull
from support.hl7_drop import DropFolderTrust

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures" / "hl7v2" / "uk_REF-I12-01-gp.hl7"


def _base() -> str:
    """The fixture as one CR-separated message without its byte-order mark."""
    text = FIXTURE.read_text("utf-8-sig")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\r".join(line for line in lines if line) + "\r"


def _segment(message: str, segment_id: str) -> str:
    return next(s for s in message.split("\r") if s.startswith(segment_id + "|"))


def _with_field(message: str, segment_id: str, number: int, value: str) -> str:
    """``message`` with field ``number`` of its first ``segment_id`` set to ``value``."""
    old = _segment(message, segment_id)
    fields = old.split("|")
    index = number - 1 if segment_id == "MSH" else number
    fields += [""] * (index + 1 - len(fields))
    fields[index] = value
    return message.replace(old, "|".join(fields), 1)


class _Trust(DropFolderTrust):
    """The drop-folder connection, and what its one referral became."""

    def only_patient(self) -> dict:
        (row,) = self.store.list_referrals(self.conn.name)
        patient = self.store.resource("Patient", row.patient_id)
        assert patient is not None
        return patient

    def only_request(self) -> dict:
        (row,) = self.store.list_referrals(self.conn.name)
        request = self.store.resource("ServiceRequest", row.id)
        assert request is not None
        return request


@pytest.fixture
def trust(tmp_path: Path):
    made = _Trust(tmp_path)
    yield made
    made.store.close()


def _quarantined_field(trust: _Trust, data: bytes) -> str | None:
    trust.drop(data)
    counts = pull(trust.conn, trust.store)
    assert (counts.stored, counts.quarantined) == (0, 1), counts
    (entry,) = trust.store.quarantine_rows(connection=trust.conn.name)
    return entry.field


# --- refused, naming the right place ---------------------------------------------------
def test_latin1_bytes_without_msh18_name_msh18(trust: _Trust) -> None:
    message = _with_field(_base(), "MSH", 18, "").replace("SIOBHAN", "SIÂN")
    assert _quarantined_field(trust, message.encode("latin-1")) == "MSH-18"


def test_bytes_that_do_not_match_the_declared_set_name_msh18(trust: _Trust) -> None:
    message = _with_field(_base(), "MSH", 18, "ASCII").replace("SIOBHAN", "SIÂN")
    assert _quarantined_field(trust, message.encode("utf-8")) == "MSH-18"


def test_latin1_declared_as_8859_1_is_read(trust: _Trust) -> None:
    message = _with_field(_base(), "MSH", 18, "8859/1").replace("SIOBHAN", "SIÂN")
    trust.drop(message.encode("latin-1"))
    assert pull(trust.conn, trust.store).stored == 1
    assert trust.only_patient()["name"][0]["given"][0] == "SIÂN"


def test_an_msh2_that_repeats_a_delimiter_names_msh2(trust: _Trust) -> None:
    message = _base().replace("MSH|^~\\&|", "MSH|^^\\&|", 1)
    assert _quarantined_field(trust, message.encode()) == "MSH-2"


def test_a_raw_cr_inside_a_field_names_the_line_never_a_silent_cut(trust: _Trust) -> None:
    message = _base().replace("FLAT 2\\S\\3 HIGH STREET", "FLAT 2\r3 HIGH STREET")
    field = _quarantined_field(trust, message.encode())
    assert field is not None and field.startswith("line ")


def test_a_segment_id_longer_than_three_characters_names_the_line(trust: _Trust) -> None:
    message = _base().replace("\rDG1|", "\rDG1X|")
    field = _quarantined_field(trust, message.encode())
    assert field is not None and field.startswith("line ")


def test_a_nul_byte_in_a_name_names_the_field_and_is_never_delivered(trust: _Trust) -> None:
    message = _base().replace("O'BRIEN", "O'BR\x00IEN")
    assert _quarantined_field(trust, message.encode()) == "PID-5"


def test_two_pid_segments_name_pid(trust: _Trust) -> None:
    pid = _segment(_base(), "PID")
    other = pid.replace("RXX0042", "RXX0099").replace("O'BRIEN", "SMITH")
    message = _base().replace(pid, f"{pid}\r{other}")
    assert _quarantined_field(trust, message.encode()) == "PID"


def test_reasons_name_positions_never_values(trust: _Trust) -> None:
    message = _base().replace("O'BRIEN", "O'BR\x00IEN")
    trust.drop(message.encode())
    pull(trust.conn, trust.store)
    (entry,) = trust.store.quarantine_rows(connection=trust.conn.name)
    assert "BR" not in entry.reason and "9434765919" not in entry.reason


# --- legal variants, read as the sender meant them -------------------------------------
@pytest.mark.parametrize(
    ("sent", "meant"),
    [
        ("198502140930", "1985-02-14"),  # YYYYMMDDHHMM
        ("19850214000000+0100", "1985-02-14"),  # a date written as a DTM at midnight
        ("19850214000000+0000", "1985-02-14"),
        ("1985021409", "1985-02-14"),  # hour precision
        ("19850214093000.1234+0000", "1985-02-14"),
    ],
)
def test_a_date_of_birth_with_any_legal_dtm_precision_is_its_calendar_date(
    trust: _Trust, sent: str, meant: str
) -> None:
    trust.drop(_with_field(_base(), "PID", 7, sent).encode())
    assert pull(trust.conn, trust.store).stored == 1
    assert trust.only_patient()["birthDate"] == meant


def test_rf1_7_sent_with_a_time_is_its_london_calendar_date(trust: _Trust) -> None:
    message = _with_field(_base(), "RF1", 7, "20260709233000+0000")  # 00:30 BST on the 10th
    trust.drop(message.encode())
    assert pull(trust.conn, trust.store).stored == 1
    assert trust.only_request()["authoredOn"] == "2026-07-10"


def test_a_date_of_birth_with_month_precision_is_refused_naming_the_field(trust: _Trust) -> None:
    assert _quarantined_field(trust, _with_field(_base(), "PID", 7, "198502").encode()) == (
        "patient.birth_date"
    )


@pytest.mark.parametrize(
    "identifier",
    [
        "9434765919^^^NHS",  # authority NHS, no identifier type
        "9434765919^^^NHS&2.16.840.1.113883.2.1.4.1&ISO",  # with its OID, no type
        "9434765919^^^NHS^NH",
        "9434765919^^^^NH",  # type NH, no authority
    ],
)
def test_an_nhs_number_is_recognised_by_authority_or_type(trust: _Trust, identifier: str) -> None:
    message = _with_field(_base(), "PID", 3, f"{identifier}~RXX0042^^^RXX^MR")
    trust.drop(message.encode())
    assert pull(trust.conn, trust.store).stored == 1
    numbers = [
        i["value"]
        for i in trust.only_patient()["identifier"]
        if i["system"] == "https://fhir.nhs.uk/Id/nhs-number"
    ]
    assert numbers == ["9434765919"]


# --- the same over MLLP, python-hl7 as the sending engine -----------------------------
def test_over_mllp_a_control_character_is_refused_at_the_door_naming_the_field(
    trust: _Trust,
) -> None:
    """AE with ERR naming PID-5: the sender's engine keeps the message; nothing is stored."""
    assert isinstance(trust.conn.source, Hl7v2Adapter)
    listener = trust.conn.source.listener(port=0).start()
    try:
        with MLLPClient("127.0.0.1", listener.port) as client:
            reply = client.send_message(_base().replace("O'BRIEN", "O'BR\x00IEN"))
    finally:
        listener.stop()
    assert b"MSA|AE|" in reply and b"PID^1^5" in reply and b"BR\x00" not in reply
    counts = pull(trust.conn, trust.store)
    assert (counts.seen, counts.stored) == (0, 0)


def test_over_mllp_two_patients_are_acknowledged_then_quarantined_naming_pid(
    trust: _Trust,
) -> None:
    pid = _segment(_base(), "PID")
    message = _base().replace(pid, f"{pid}\r{pid.replace('RXX0042', 'RXX0099')}")
    assert isinstance(trust.conn.source, Hl7v2Adapter)
    listener = trust.conn.source.listener(port=0).start()
    try:
        with MLLPClient("127.0.0.1", listener.port) as client:
            assert b"MSA|AA|" in client.send_message(message)
        counts = pull(trust.conn, trust.store)
    finally:
        listener.stop()
    assert (counts.stored, counts.quarantined) == (0, 1)
    (entry,) = trust.store.quarantine_rows(connection=trust.conn.name)
    assert (entry.field, entry.code) == ("PID", "unreadable")
