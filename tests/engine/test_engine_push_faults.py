"""Write-back under faults, against the in-memory fake trust (no HTTP, no patching)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.memory import Faults, MemoryTrust
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.errors import ConnectionStopError
from ehr_bridge.mapping import load_mapping
from ehr_bridge.retry import RetryPolicy
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.sim.platform import SyntheticPlatform
from ehr_bridge.store import Store
from ehr_bridge.sync.collect import collect
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.deliver import deliver
from ehr_bridge.sync.pull import pull
from ehr_bridge.sync.push import build_write_item, push


def _referral_records(count: int) -> list[dict]:
    export = TrustSimulator(seed=11, referrals=count).export()
    return [
        e["referral"] for e in export["referrals"] if e["referral"]["referred_on_to"] == "IESO01"
    ]


def _setup(
    tmp_path: Path, faults: Faults, max_attempts: int = 30
) -> tuple[Connection, Store, MemoryTrust]:
    trust = MemoryTrust(_referral_records(5), faults=faults)
    provider = FolderProvider(tmp_path / "provider")
    conn = Connection(
        name="fake",
        mapping=load_mapping(bundled_mapping("iaptus.yaml")),
        source=trust,
        writer=trust,
        provider=provider,
        provider_ref=ProviderRef(code="IESO01", display="Provider"),
        test_connection=True,  # synthetic patients: test-range NHS numbers
        retry=RetryPolicy(max_attempts=max_attempts, base_delay=0, max_delay=0),
    )
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    pull(conn, store)
    deliver(conn, store)
    SyntheticPlatform(tmp_path / "provider", seed=11).step()
    collect(conn, store)
    return conn, store, trust


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ambiguous_and_transient_failures_never_duplicate_or_lose(
    tmp_path: Path, seed: int
) -> None:
    conn, store, trust = _setup(tmp_path, Faults(transient=0.25, ambiguous=0.25, seed=seed))
    queued = len(store.outbox_rows(connection="fake"))
    for _ in range(60):
        push(conn, store)
        if not store.outbox_counts("fake").get("pending"):
            break
    assert store.outbox_counts("fake") == {"done": queued}
    assert len(trust.items) == queued  # one item per outbox row: none lost, none twice
    done = store.outbox_rows(connection="fake", state="done")
    assert {r.trust_id for r in done} == {str(v["id"]) for v in trust.items.values()}
    assert trust.write_calls > queued  # the faults really fired


def test_rejected_items_are_dead_lettered_without_blocking_others(tmp_path: Path) -> None:
    conn, store, _ = _setup(tmp_path, Faults(terminal=0.3, seed=4))
    push(conn, store)
    counts = store.outbox_counts("fake")
    dead = store.outbox_rows(connection="fake", state="dead")
    assert dead and counts.get("done")
    assert all(r.last_error and r.last_error_code for r in dead)
    assert counts.get("pending", 0) == 0 and counts.get("in_flight", 0) == 0


def test_items_are_dead_lettered_after_the_last_attempt(tmp_path: Path) -> None:
    conn, store, _ = _setup(tmp_path, Faults(transient=1.0), max_attempts=3)
    for _ in range(5):
        push(conn, store)
    rows = store.outbox_rows(connection="fake")
    assert rows and all(r.state == "dead" for r in rows if r.depends_on is None)
    assert all(r.attempts == 3 for r in rows if r.depends_on is None)
    # notes and scores whose care contact never got written are dead too, saying why
    dependants = [r for r in rows if r.depends_on is not None]
    assert dependants and all(r.last_error_code == "dependency_failed" for r in dependants)


def test_connection_stop_releases_claimed_rows(tmp_path: Path) -> None:
    conn, store, trust = _setup(tmp_path, Faults())

    def refuse(_item: object) -> object:
        raise ConnectionStopError("credentials refused")

    trust.write = refuse  # type: ignore[method-assign]
    with pytest.raises(ConnectionStopError):
        push(conn, store)
    counts = store.outbox_counts("fake")
    assert counts.get("in_flight", 0) == 0 and counts.get("pending")
    assert all(r.attempts == 0 for r in store.outbox_rows(connection="fake"))


def test_a_crashed_attempt_is_found_not_rewritten(tmp_path: Path) -> None:
    conn, store, trust = _setup(tmp_path, Faults())
    rows = store.claim_due("fake", owner="crashed", lease_seconds=-1, limit=1)
    (row,) = rows
    item = build_write_item(conn, store, row)
    trust.write(item)  # the crashed worker's write reached the trust; its commit did not
    push(conn, store)
    assert len(trust.items) == len(store.outbox_rows(connection="fake"))
    assert store.outbox_row(row.id).state == "done"  # type: ignore[union-attr]
