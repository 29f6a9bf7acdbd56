"""Collect in batches: one commit per batch, acknowledged only after it, never stored twice.

Against the in-memory fake trust and a real provider folder; the faults are wrappers
around the folder adapter and the store (no patching of the code under test).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.memory import MemoryTrust
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.domain.session import build_encounter, build_note, build_score, session_bundle
from ehr_bridge.mapping import load_mapping
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.store import Store
from ehr_bridge.store.submissions import CollectedBundle
from ehr_bridge.sync.collect import collect
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.deliver import deliver
from ehr_bridge.sync.pull import pull

JsonDict = dict[str, Any]
START = datetime(2026, 10, 1, 18, 0, tzinfo=UTC)


class CrashOnAcknowledge(FolderProvider):
    """The folder adapter, except that the process "dies" at the first acknowledgement."""

    def acknowledge(self, handle: str) -> None:
        raise KeyboardInterrupt("killed between commit and acknowledge")


class StoreThatCannotCommit(Store):
    """A store whose batch write fails, as a full disk or a lost database would."""

    def save_submissions(self, connection: str, bundles: Any) -> None:
        raise OSError("disk full")


def _records(count: int) -> list[JsonDict]:
    export = TrustSimulator(seed=11, referrals=count).export()
    return [
        e["referral"] for e in export["referrals"] if e["referral"]["referred_on_to"] == "IESO01"
    ]


def _connection(provider: FolderProvider) -> Connection:
    trust = MemoryTrust(_records(12))
    return Connection(
        name="fake",
        mapping=load_mapping(bundled_mapping("iaptus.yaml")),
        source=trust,
        writer=trust,
        provider=provider,
        provider_ref=ProviderRef(code="IESO01", display="Provider"),
        test_connection=True,  # the simulator's patients have 999-range test NHS numbers
    )


@pytest.fixture
def bridge(tmp_path: Path) -> tuple[Connection, Store]:
    conn = _connection(FolderProvider(tmp_path / "provider"))
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    pull(conn, store)
    deliver(conn, store)
    return conn, store


def _bundle(
    key: str, referral_id: str, patient_id: str, *, phq9_total: int | None = None
) -> JsonDict:
    ids = {"patient_id": patient_id, "service_request_id": referral_id}
    encounter = build_encounter(
        encounter_id=f"{key}-e", start=START, end=START + timedelta(minutes=50), **ids
    )
    scores = build_score(
        observation_id=f"{key}-o",
        response_id=f"{key}-q",
        encounter_id=f"{key}-e",
        measure_key="phq9",
        items=[2, 2, 1, 2, 1, 1, 2, 1, 0],
        effective=START + timedelta(minutes=45),
        **ids,
    )
    note = build_note(
        document_id=f"{key}-n",
        encounter_id=f"{key}-e",
        text="Session 1: goals agreed.",
        authored=START + timedelta(minutes=55),
        **ids,
    )
    bundle = session_bundle(f"{key}-b", [encounter, *scores, note])
    if phq9_total is not None:  # a provider bug: a total that is not the items' sum
        for entry in bundle["entry"]:
            if entry["resource"]["resourceType"] == "Observation":
                entry["resource"]["valueQuantity"]["value"] = phq9_total
    return bundle


def _write(conn: Connection, name: str, body: JsonDict | str, order: int) -> None:
    assert isinstance(conn.provider, FolderProvider)
    path = conn.provider.sessions_dir / name
    path.write_text(body if isinstance(body, str) else json.dumps(body), encoding="utf-8")
    os.utime(path, ns=(order * 10**9, order * 10**9))


def _sessions(conn: Connection, store: Store, count: int) -> list[str]:
    """One good session bundle for each of the first ``count`` referrals; their handles."""
    referrals = store.list_referrals("fake")[:count]
    assert len(referrals) == count
    handles = []
    for number, referral in enumerate(referrals):
        handle = f"s{number:03d}.json"
        _write(conn, handle, _bundle(f"k{number}", referral.id, referral.patient_id), number)
        handles.append(handle)
    return handles


def _waiting(conn: Connection) -> list[str]:
    assert isinstance(conn.provider, FolderProvider)
    return sorted(p.name for p in conn.provider.sessions_dir.glob("*.json"))


def _receipts(store: Store) -> int:
    from sqlmodel import func, select

    from ehr_bridge.store.models import SubmissionRow

    with store.session() as s:
        return int(s.exec(select(func.count()).select_from(SubmissionRow)).one())


def test_a_crash_between_commit_and_acknowledge_is_already_stored_next_time(
    bridge: tuple[Connection, Store], tmp_path: Path
) -> None:
    conn, store = bridge
    handles = _sessions(conn, store, 7)
    crashing = _connection(CrashOnAcknowledge(tmp_path / "provider"))
    with pytest.raises(KeyboardInterrupt):
        collect(crashing, store, batch_size=3, workers=0)
    assert _waiting(conn) == handles  # nothing acknowledged
    assert _receipts(store) == 3  # the first batch committed whole
    outbox_after_crash = {r.id for r in store.outbox_rows(connection="fake")}

    counts = collect(conn, store, batch_size=3, workers=0)

    assert (counts.already_stored, counts.stored, counts.quarantined) == (3, 4, 0)
    assert _waiting(conn) == []
    assert _receipts(store) == 7
    rows = store.outbox_rows(connection="fake")
    assert len(rows) == len({r.id for r in rows})
    assert outbox_after_crash < {r.id for r in rows}
    assert sum(1 for r in rows if r.kind == "care_contact") == 7


def test_nothing_is_acknowledged_when_the_batch_does_not_commit(
    bridge: tuple[Connection, Store], tmp_path: Path
) -> None:
    conn, _ = bridge
    handles = _sessions(conn, bridge[1], 4)
    failing = StoreThatCannotCommit(f"sqlite:///{tmp_path / 'state.db'}")
    with pytest.raises(OSError, match="disk full"):
        collect(conn, failing, batch_size=10, workers=0)
    assert _waiting(conn) == handles


def test_a_bad_bundle_in_a_batch_is_quarantined_and_the_others_are_stored(
    bridge: tuple[Connection, Store],
) -> None:
    conn, store = bridge
    handles = _sessions(conn, store, 3)
    referral = store.list_referrals("fake")[3]
    bad = _bundle("bad", referral.id, referral.patient_id, phq9_total=27)
    _write(conn, "s100.json", bad, 100)
    _write(conn, "s101.json", "{not json", 101)
    stranger = _bundle("stranger", "sr-unknown", referral.patient_id)
    _write(conn, "s102.json", stranger, 102)

    counts = collect(conn, store, batch_size=10, workers=0)

    assert (counts.submissions, counts.stored, counts.quarantined) == (6, 3, 3)
    assert _waiting(conn) == []
    entries = {e.record_ref: e for e in store.quarantine_rows(connection="fake")}
    assert set(entries) == {"s100.json", "s101.json", "s102.json"}
    assert entries["s100.json"].code == "score_mismatch"
    assert entries["s100.json"].field == "entry[2].resource.valueQuantity.value"
    assert entries["s101.json"].code == "unreadable"
    assert entries["s102.json"].code == "unknown_referral"
    pending = store.outbox_rows(connection="fake", state="pending")
    written_back = {r.referral_id for r in pending if r.kind != "referral_status"}
    assert referral.id not in written_back  # nothing of the bad bundle is written back
    assert len(written_back) == len(handles)


def test_the_same_bundle_twice_in_one_batch_or_across_batches_is_stored_once(
    bridge: tuple[Connection, Store],
) -> None:
    conn, store = bridge
    referral = store.list_referrals("fake")[0]
    bundle = _bundle("same", referral.id, referral.patient_id)
    for order, name in enumerate(["a.json", "b.json", "c.json", "d.json"]):
        _write(conn, name, bundle, order)

    counts = collect(conn, store, batch_size=3, workers=0)  # a, b, c together; then d

    assert (counts.submissions, counts.stored, counts.already_stored) == (4, 1, 3)
    assert _waiting(conn) == []
    assert _receipts(store) == 1
    contacts = store.outbox_rows(connection="fake", referral_id=referral.id)
    assert sum(1 for r in contacts if r.kind == "care_contact") == 1


def test_a_batch_commits_like_bundles_saved_one_after_another(
    bridge: tuple[Connection, Store],
) -> None:
    _, store = bridge
    referral = store.list_referrals("fake")[0]
    first = _bundle("one", referral.id, referral.patient_id)
    later = _bundle("one", referral.id, referral.patient_id)
    later["entry"][0]["resource"]["period"]["end"] = "2026-10-01T19:00:00+00:00"
    records = [
        CollectedBundle(
            "a.json",
            "hash-a",
            referral.id,
            [first["entry"][0]["resource"]],
            [],
        ),
        CollectedBundle("b.json", "hash-b", referral.id, [later["entry"][0]["resource"]], []),
    ]
    store.save_submissions("fake", records)
    encounter = store.resource("Encounter", "one-e")
    assert encounter is not None
    assert encounter["period"]["end"] == "2026-10-01T19:00:00+00:00"  # the last body wins
    assert store.stored_submissions("fake", ["hash-a", "hash-b", "hash-c"]) == {
        "hash-a",
        "hash-b",
    }


def test_a_retried_bundle_resolves_its_quarantine_entry_when_stored(
    bridge: tuple[Connection, Store],
) -> None:
    conn, store = bridge
    referral = store.list_referrals("fake")[0]
    _write(conn, "late.json", _bundle("x", referral.id, "someone-else"), 1)
    assert collect(conn, store, workers=0).quarantined == 1
    assert [e.code for e in store.quarantine_rows(connection="fake")] == ["patient_mismatch"]
    _write(conn, "late.json", _bundle("x", referral.id, referral.patient_id), 2)

    counts = collect(conn, store, workers=0)

    assert counts.stored == 1
    assert store.quarantine_rows(connection="fake") == []
    resolved = store.quarantine_rows(connection="fake", state="resolved")
    assert [e.record_ref for e in resolved] == ["late.json"]


def test_a_large_backlog_is_listed_and_collected_page_by_page(tmp_path: Path) -> None:
    provider = FolderProvider(tmp_path / "provider", listing_page=3)
    conn = _connection(provider)
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    pull(conn, store)
    deliver(conn, store)
    handles = _sessions(conn, store, 8)

    counts = collect(conn, store, batch_size=2, workers=0)

    assert (counts.submissions, counts.stored) == (8, 8)
    assert _waiting(conn) == []
    assert sorted(os.listdir(provider.processed_dir)) == handles


def test_unreadable_files_go_to_rejected_named_safely_and_the_rest_are_collected(
    bridge: tuple[Connection, Store],
) -> None:
    """A badly named file, a link out, a deep JSON: each quarantined, moved to rejected/."""
    conn, store = bridge
    provider = conn.provider
    assert isinstance(provider, FolderProvider)
    handles = _sessions(conn, store, 3)
    _write(conn, "s101.json", "{not json", 101)
    _write(conn, "s102.json", "[" * 100_000 + "]" * 100_000, 102)
    os.symlink("/etc/passwd", provider.sessions_dir / "s103.json")
    badly_named = os.fsdecode(b"s104-s\xe9ance\x1b[2J.json")  # Latin-1 byte, ANSI escape
    (provider.sessions_dir / badly_named).write_text("{}")

    counts = collect(conn, store, batch_size=10, workers=0)

    assert (counts.stored, counts.quarantined) == (3, 4)
    assert sorted(os.listdir(provider.processed_dir)) == handles
    rejected = sorted(os.listdir(provider.rejected_dir))
    assert rejected == ["s101.json", "s102.json", "s103.json", "s104-s%E9ance%1B[2J.json"]
    assert (provider.rejected_dir / "s103.json").is_symlink()  # moved, never followed
    entries = {e.record_ref: e.code for e in store.quarantine_rows(connection="fake")}
    assert entries == {name: "unreadable" for name in rejected}
    assert _waiting(conn) == []
