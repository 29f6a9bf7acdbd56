"""The store's transactions on both backends: SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import SQLAlchemyError

from ehr_bridge.store import NewOutboxItem, NewQuarantine, PulledReferral, Store
from ehr_bridge.store.models import OutboxRow
from support.bridge import running_bridge
from support.databases import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    store = Store(database_url(request.param, tmp_path))
    yield store
    store.close()


def _pulled(trust_id: str, source_hash: str = "h1") -> PulledReferral:
    patient = {"resourceType": "Patient", "id": f"p-{trust_id}"}
    service_request = {"resourceType": "ServiceRequest", "id": f"sr-{trust_id}"}
    return PulledReferral(
        trust_id, source_hash, "1", "active", f"L{trust_id}", None, patient, service_request
    )


def _queue(store: Store, keys: list[str]) -> None:
    store.save_pull_page("c", [_pulled("1")], [], None)
    items = [NewOutboxItem(k, "sr-1", "care_contact", "Encounter", k) for k in keys]
    store.mark_delivered("sr-1", "x", items)


def test_page_and_cursor_commit_together(store: Store) -> None:
    quarantine = NewQuarantine(
        "referral", "R9", "validation", "bad", "patient.nhs_number", {"id": "R9"}
    )
    store.save_pull_page("c", [_pulled("1"), _pulled("2")], [quarantine], "2026-11-01T00:00:00Z")
    assert store.get_cursor("c") == "2026-11-01T00:00:00Z"
    assert store.pull_page_state("c", ["1"]).source_hashes.get("1") == "h1"
    assert store.referral_counts("c") == {"pulled": 2, "delivered": 0}
    assert store.quarantine_count("c") == 1
    with pytest.raises((TypeError, SQLAlchemyError)):  # a failing page leaves nothing behind
        store.save_pull_page("c", [_pulled("3")], [], object())  # type: ignore[arg-type]
    assert store.get_cursor("c") == "2026-11-01T00:00:00Z"
    assert store.pull_page_state("c", ["3"]).source_hashes.get("3") is None


def test_an_updated_referral_resolves_its_quarantine(store: Store) -> None:
    quarantine = NewQuarantine("referral", "1", "validation", "bad", "received_date", {"id": "1"})
    store.save_pull_page("c", [], [quarantine], None)
    assert store.quarantine_count("c") == 1
    store.save_pull_page("c", [_pulled("1", "h2")], [], None)
    assert store.quarantine_count("c") == 0


def test_queueing_the_same_key_twice_is_a_no_op(store: Store) -> None:
    _queue(store, ["k1", "k2"])
    store.mark_delivered(
        "sr-1", "x", [NewOutboxItem("k1", "sr-1", "care_contact", "Encounter", "k1")]
    )
    assert store.outbox_counts("c") == {"pending": 2}


def test_two_workers_never_claim_the_same_row(store: Store) -> None:
    _queue(store, [f"k{i}" for i in range(30)])
    first = store.claim_due("c", owner="host:1", lease_seconds=60, limit=20)
    second = store.claim_due("c", owner="host:2", lease_seconds=60, limit=20)
    assert len(first) == 20 and len(second) == 10
    assert not {r.id for r in first} & {r.id for r in second}
    assert store.claim_due("c", owner="host:3", lease_seconds=60) == []


def test_a_lapsed_lease_is_reclaimed_and_counted_as_an_attempt(store: Store) -> None:
    _queue(store, ["k1"])
    (row,) = store.claim_due("c", owner="host:1", lease_seconds=-1)
    assert row.attempts == 0
    (again,) = store.claim_due("c", owner="host:2", lease_seconds=60)
    assert again.id == "k1" and again.attempts == 1


def test_leases_of_dead_local_processes_are_freed(store: Store) -> None:
    _queue(store, ["k1", "k2"])
    store.claim_due("c", owner="here:111", lease_seconds=600, limit=1)
    store.claim_due("c", owner="elsewhere:222", lease_seconds=600, limit=1)
    freed = store.expire_orphaned_leases("here", is_alive=lambda pid: False)
    assert freed == 1
    reclaimed = store.claim_due("c", owner="here:333", lease_seconds=60)
    assert [r.lease_owner for r in reclaimed] == ["here:333"]


def test_finish_attempt_records_receipt(store: Store) -> None:
    _queue(store, ["k1"])
    store.claim_due("c", owner="h:1", lease_seconds=60)
    store.finish_attempt("k1", state="done", trust_id="CC0000001")
    row = store.outbox_row("k1")
    assert isinstance(row, OutboxRow)
    assert (row.state, row.trust_id, row.attempts) == ("done", "CC0000001", 1)
    assert row.done_at is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_end_to_end_on_each_backend(backend: str, tmp_path: Path) -> None:
    url = database_url(backend, tmp_path)
    with running_bridge(tmp_path, seed=9, referrals=4, database_url=url) as bridge:
        bridge.settle()
        counts = bridge.store.outbox_counts(bridge.conn.name)
        assert set(counts) == {"done"}
        export = bridge.simulator.export()
        written = sum(
            len(e["care_contacts"]) + len(e["clinical_notes"]) + len(e["assessments"])
            for e in export["referrals"]
        )
        expected = [a for a in bridge.platform.expected_artefacts() if a.kind != "episode_end"]
        assert written == len(expected)
