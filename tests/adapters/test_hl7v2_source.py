"""The drop folder as a TrustSource: arrival stamps, closed-start cursor, paging, bad files."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ehr_bridge.adapters.hl7v2.inbox import Inbox, stamp_instant, stamp_text
from ehr_bridge.adapters.hl7v2.source import DropFolderSource

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7v2"


def _message(referral: str) -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|IAPTUS|RXX|EHR-BRIDGE|IESO01|20261126||REF^I12^REF_I12|{referral}|P|2.5",
            f"RF1|A|||||{referral}^IAPTUS|20261120",
            "PID|1||L1^^^RXX^MR",
        ]
    )


def _source(tmp_path: Path, *, settle: float = 0.0, page_size: int = 2) -> DropFolderSource:
    inbox = Inbox(tmp_path / "drop", tmp_path / "drop" / "received", settle_seconds=settle)
    inbox.ensure()
    return DropFolderSource(inbox, zone=ZoneInfo("Europe/London"), page_size=page_size)


def _drop(source: DropFolderSource, name: str, text: str | bytes) -> Path:
    path = source.inbox.drop / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _all(source: DropFolderSource, since: datetime | None = None) -> list[dict]:
    records, page = [], None
    while True:
        result = source.fetch_referrals(updated_since=since, page=page)
        records.extend(result.records)
        if result.next_page is None:
            return records
        page = result.next_page


def _ids(records: list[dict]) -> list[str]:
    return [r["RF1"][0]["6"][0]["1"] for r in records]


def test_files_are_read_in_arrival_order_across_pages(tmp_path: Path) -> None:
    source = _source(tmp_path)
    for n in range(5):
        path = _drop(source, f"z{n}.hl7", _message(f"R{n}"))
        os.utime(path, (1_000_000 + n, 1_000_000 + n))  # arrival order differs from names
    records = _all(source)
    assert _ids(records) == ["R0", "R1", "R2", "R3", "R4"]
    assert not list(source.inbox.drop.glob("*.hl7"))  # all moved to received/
    stamps = [r["updated_at"] for r in records]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5


def test_the_cursor_is_a_closed_start_and_later_arrivals_come_after_it(tmp_path: Path) -> None:
    source = _source(tmp_path)
    for n in range(3):
        _drop(source, f"a{n}.hl7", _message(f"R{n}"))
    first = _all(source)
    cursor = datetime.fromisoformat(first[-1]["updated_at"].replace("Z", "+00:00"))
    _drop(source, "late.hl7", _message("R9"))
    assert _ids(_all(source, since=cursor)) == ["R2", "R9"]  # the last one again, then new


def test_stamps_never_go_backwards_even_if_the_clock_does(tmp_path: Path) -> None:
    source = _source(tmp_path)
    future = datetime.now(UTC) + timedelta(days=1)
    (source.inbox.received / ".last-stamp").write_text(stamp_text(future))
    _drop(source, "a.hl7", _message("R1"))
    (record,) = _all(source)
    assert stamp_instant(record["file"].split("/")[1]) > future


def test_fresh_and_partial_files_wait_in_the_drop_folder(tmp_path: Path) -> None:
    source = _source(tmp_path, settle=60)
    _drop(source, "fresh.hl7", _message("R1"))
    old = _drop(source, "old.hl7", _message("R2"))
    os.utime(old, (time.time() - 120, time.time() - 120))
    _drop(source, "writing.hl7.part", _message("R3"))
    _drop(source, ".hidden.hl7", _message("R4"))
    assert _ids(_all(source)) == ["R2"]
    assert sorted(p.name for p in source.inbox.drop.iterdir() if p.is_file()) == [
        ".hidden.hl7",
        "fresh.hl7",
        "writing.hl7.part",
    ]


def test_a_batch_file_gives_one_record_per_message(tmp_path: Path) -> None:
    source = _source(tmp_path)
    batch = "\n".join(["FHS|^~\\&", _message("R1"), _message("R2"), "FTS|1"])
    _drop(source, "batch.hl7", batch)
    records = _all(source)
    assert _ids(records) == ["R1", "R2"]
    assert records[1]["file"] == records[0]["file"] + "#1"


def test_unreadable_files_still_become_records_for_quarantine(tmp_path: Path) -> None:
    source = _source(tmp_path)
    _drop(source, "a-empty.hl7", b"")
    _drop(source, "b-latin.hl7", "MSH|^~\\&|A\rPID|1||||Siân".encode("latin-1"))
    _drop(source, "c-bad-msh.hl7", "MSH|A|B")
    _drop(source, "d-cut.hl7", _message("R1").replace("L1^^^RXX^MR", "L1^^^RXX^MR\rSt John"))
    records = _all(source)
    assert [r["unreadable_field"] for r in records] == ["MSH", "MSH-18", "MSH-2", "line 4"]
    assert [r["unreadable"].split(":")[0] for r in records] == ["MSH", "MSH-18", "MSH-2", "line 4"]
    assert all(set(r) == {"updated_at", "file", "unreadable", "unreadable_field"} for r in records)
    assert not any("Si" in r["unreadable"] or "John" in r["unreadable"] for r in records)


def test_the_fixture_files_with_bom_crlf_and_lf_decode_alike(tmp_path: Path) -> None:
    source = _source(tmp_path, page_size=10)
    for name in ("uk_REF-I12-01-gp.hl7", "uk_REF-I12-02-self.hl7", "uk_REF-I14-03-cancel.hl7"):
        _drop(source, name, (FIXTURES / name).read_bytes())
    records = _all(source)
    assert sorted(_ids(records)) == ["SR0000123", "SR0000123", "SR0000124"]
    assert all(len(r["PID"]) == 1 and "MSH" in r for r in records)


def test_accept_writes_durably_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    source = _source(tmp_path)
    path = source.inbox.accept(_message("R1").encode())
    assert path.parent == source.inbox.drop and path.read_bytes() == _message("R1").encode()
    assert [p.name for p in source.inbox.drop.iterdir() if p.is_file()] == [path.name]
    assert _ids(_all(source)) == ["R1"]
