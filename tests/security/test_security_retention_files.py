"""Retention deletes the plain-text files adapters keep, not only the database's payloads.

Real connections, real files, real modification times. The folder provider's
``sessions/processed`` (session bundles with their note text) and ``sessions/rejected``
(unreadable submissions) after a real collect, aged with ``os.utime``; ``ehr-bridge
retention purge`` deletes what is past ``retention_days`` (a rejected file only once its
quarantine entry was closed that long ago), prints counts and never a file's content; a
dry run changes nothing. The HL7 v2 adapter's ``received`` files go once pulled (stamped
before the cursor) and past the period; the file at the cursor and those never pulled stay.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from ehr_bridge.adapters.hl7v2 import Hl7v2Adapter
from ehr_bridge.cli.app import app
from ehr_bridge.store import QuarantineRow, Store, utcnow
from ehr_bridge.store.audit import AuditEntry
from ehr_bridge.store.models import CursorRow
from ehr_bridge.sync.cycle import run_cycle
from ehr_bridge.sync.retention import purge_kept_files
from support.databases import BACKENDS, database_url
from support.trusts import PHQ9_ITEMS, TrustHarness, score_bundle, trust_harness

NOTE = "Talked through the week; the panic diary is helping with the mornings."
DAY = 86400.0
runner = CliRunner()


def _with_retention(harness: TrustHarness, days: int = 30) -> Path:
    config = harness.workdir / "ehr-bridge.toml"
    text = config.read_text("utf-8")
    config.write_text(text.replace("[security]\n", f"[security]\nretention_days = {days}\n", 1))
    return config


def _age(path: Path, days: float) -> None:
    moment = time.time() - days * DAY
    os.utime(path, (moment, moment))


def _purge(config: Path, *args: str) -> tuple[dict[str, object], str]:
    base = ["--config", str(config), "retention", "purge", *args]
    as_json = runner.invoke(app, [*base, "--json"])
    assert as_json.exit_code == 0, as_json.output
    return json.loads(as_json.stdout), as_json.stdout


def test_processed_and_rejected_session_files_go_after_the_period(tmp_path: Path) -> None:
    with trust_harness("iaptus", tmp_path / "w", referrals=2) as harness:
        config = _with_retention(harness)
        for number, referral in enumerate(harness.referrals, start=1):
            bundle = score_bundle(referral, "phq9", PHQ9_ITEMS, note=NOTE, number=number)
            harness.submit(bundle)
        (harness.sessions_dir / "unreadable.json").write_text(f"{NOTE} {{", "utf-8")
        for written in harness.sessions_dir.glob("*.json"):
            _age(written, 40)  # the platform wrote them long ago; collected only now
        run_cycle(harness.conn, harness.store, flows=("collect",))
        processed = sorted((harness.sessions_dir / "processed").iterdir())
        rejected = harness.sessions_dir / "rejected" / "unreadable.json"
        assert len(processed) == 2 and rejected.is_file()
        assert all(time.time() - p.stat().st_mtime < 60 for p in [*processed, rejected])
        old, new = processed
        _age(old, 31)
        _age(rejected, 31)

        dry, _ = _purge(config, "--dry-run")
        assert dry["files"] == {"sessions/processed": 1} and dry["dry_run"] is True
        assert old.exists() and rejected.exists()

        done, printed = _purge(config)
        assert done["files"] == {"sessions/processed": 1}
        assert not old.exists() and new.exists()
        assert rejected.exists(), "its quarantine entry is open: the file is its only copy"

        (entry,) = harness.store.quarantine_rows(connection=harness.conn.name)
        assert entry.record_ref == "unreadable.json" and entry.id is not None
        closed = AuditEntry("quarantine_dismiss", "test", reason="looked at")
        assert harness.store.close_quarantine_entry(entry.id, "dismissed", closed)
        assert _purge(config)[0]["files"] == {}  # closed today: kept like its raw record
        _close_long_ago(harness, entry.id, days=31)
        text = runner.invoke(app, ["--config", str(config), "retention", "purge"])
        assert text.exit_code == 0, text.output
        assert "kept files past retention: deleted 1 (sessions/rejected: 1)" in text.stdout
        assert not rejected.exists() and new.exists()
    for output in (printed, text.stdout):
        assert NOTE not in output and "panic" not in output


def test_hl7_received_files_go_once_pulled_and_past_the_period(tmp_path: Path) -> None:
    with trust_harness("hl7v2", tmp_path / "w", referrals=3) as harness:
        adapter = harness.conn.source
        assert isinstance(adapter, Hl7v2Adapter)
        received = adapter.source.inbox.received
        pulled = sorted(p for p in received.rglob("*.hl7"))
        assert len(pulled) == 3
        cursor = harness.store.get_cursor(harness.conn.name)
        assert cursor is not None
        late = adapter.source.inbox.accept(pulled[0].read_bytes(), prefix="late")
        assert adapter.source.inbox.receive() == 1 and not late.exists()  # not pulled yet

        now = utcnow()
        assert purge_kept_files([harness.conn], harness.store, 30, now=now) == {}
        later = now + timedelta(days=31)
        dry = purge_kept_files([harness.conn], harness.store, 30, now=later, dry_run=True)
        assert dry == {"received": 2} and all(p.exists() for p in pulled)
        done = purge_kept_files([harness.conn], harness.store, 30, now=later)
        assert done == {"received": 2}
        left = sorted(p.name for p in received.rglob("*.hl7"))
        assert pulled[-1].name in left, "the file at the cursor is read again by the next pull"
        assert any(name.endswith(".hl7") and "late-" in name for name in left)
        assert len(left) == 2


def test_a_source_never_pulled_keeps_every_file(tmp_path: Path) -> None:
    with trust_harness("hl7v2", tmp_path / "w", referrals=1) as harness:
        with harness.store.session() as s:
            for row in s.exec(select(CursorRow)).all():
                s.delete(row)
        later = utcnow() + timedelta(days=365)
        assert purge_kept_files([harness.conn], harness.store, 30, now=later) == {}


def _close_long_ago(harness: TrustHarness, entry_id: int, *, days: int) -> None:
    with harness.store.session() as s:
        row = s.get(QuarantineRow, entry_id)
        assert row is not None
        row.closed_at = utcnow() - timedelta(days=days)
        s.add(row)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_entries_retention_still_keeps_name_their_files(backend: str, tmp_path: Path) -> None:
    store = Store(database_url(backend, tmp_path))
    now = utcnow()
    long_ago, lately = now - timedelta(days=40), now - timedelta(days=2)
    entries = {
        "open.json": ("open", None, long_ago),
        "closed-lately.json": ("dismissed", lately, long_ago),
        "closed-long-ago.json": ("resolved", long_ago, long_ago),
        "closed-undated-lately.json": ("dismissed", None, lately),
        "closed-undated-long-ago.json": ("dismissed", None, long_ago),
    }
    try:
        with store.session() as s:
            for ref, (state, closed_at, created_at) in entries.items():
                s.add(_entry("c", "submission", ref, state, closed_at, created_at))
            s.add(_entry("other", "submission", "elsewhere.json", "open", None, now))
            s.add(_entry("c", "referral", "a-referral", "open", None, now))
        held = store.held_quarantine_refs("c", "submission", now - timedelta(days=30))
    finally:
        store.close()
    assert held == {"open.json", "closed-lately.json", "closed-undated-lately.json"}


def _entry(
    connection: str,
    source: str,
    ref: str,
    state: str,
    closed_at: datetime | None,
    created_at: datetime,
) -> QuarantineRow:
    return QuarantineRow(
        connection=connection,
        source=source,
        record_ref=ref,
        code="unreadable",
        reason="not_json",
        payload_hash=ref,
        state=state,
        closed_at=closed_at,
        created_at=created_at,
    )
