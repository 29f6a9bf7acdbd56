"""Property: whatever the fault schedule, push ends with each item at the trust once or dead.

Hypothesis draws the outcome of every write call (ok, transient, ambiguous: committed but
the answer lost, terminal) and the attempt limit; the in-memory fake trust plays them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.memory import Faults, MemoryTrust
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.mapping import load_mapping
from ehr_bridge.retry import RetryPolicy
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.sim.platform import SyntheticPlatform
from ehr_bridge.store import Store
from ehr_bridge.sync.collect import collect
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.deliver import deliver
from ehr_bridge.sync.pull import pull
from ehr_bridge.sync.push import push

OUTCOMES = st.sampled_from(["ok", "ok", "transient", "ambiguous", "terminal"])
REFERRALS = [
    e["referral"]
    for e in TrustSimulator(seed=17, referrals=3).export()["referrals"]
    if e["referral"]["referred_on_to"] == "IESO01"
][:2]


def _connection(root: Path, trust: MemoryTrust, attempts: int) -> Connection:
    return Connection(
        name="prop",
        mapping=load_mapping(bundled_mapping("iaptus.yaml")),
        source=trust,
        writer=trust,
        provider=FolderProvider(root / "provider"),
        provider_ref=ProviderRef(code="IESO01", display="Provider"),
        test_connection=True,  # synthetic patients: test-range NHS numbers
        retry=RetryPolicy(max_attempts=attempts, base_delay=0, max_delay=0),
    )


@pytest.fixture(scope="module")
def queued_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state database with a full outbox, made once and copied for each example."""
    root = tmp_path_factory.mktemp("queued")
    conn = _connection(root, MemoryTrust(REFERRALS), 1)
    store = Store(f"sqlite:///{root / 'state.db'}")
    pull(conn, store)
    deliver(conn, store)
    SyntheticPlatform(root / "provider", seed=17).step()
    collect(conn, store)
    store.close()
    return root / "state.db"


def _bridge(
    queued: Path, root: Path, schedule: list[str], attempts: int
) -> tuple[Connection, Store, MemoryTrust]:
    shutil.copyfile(queued, root / "state.db")
    trust = MemoryTrust(REFERRALS, faults=Faults(schedule=schedule))
    return _connection(root, trust, attempts), Store(f"sqlite:///{root / 'state.db'}"), trust


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(schedule=st.lists(OUTCOMES, max_size=80), attempts=st.integers(min_value=1, max_value=6))
def test_push_under_any_fault_schedule(
    queued_state: Path, schedule: list[str], attempts: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        conn, store, trust = _bridge(queued_state, Path(folder), schedule, attempts)
        for _ in range(attempts * 3 + 5):
            push(conn, store)
        rows = store.outbox_rows(connection="prop")
        store.close()
    states = {r.state for r in rows}
    assert states <= {"done", "dead"}, states  # nothing left hanging
    at_trust = {ref for (_, _, ref) in trust.items}
    done = {r.id for r in rows if r.state == "done"}
    assert at_trust == done  # every done item is at the trust, and nothing else is
    assert len(trust.items) == len(at_trust)  # and each exactly once
    for row in rows:
        if row.state == "done":
            assert row.trust_id == str(
                next(v["id"] for (_, _, ref), v in trust.items.items() if ref == row.id)
            )
        else:
            assert row.last_error_code, "a dead letter always says why"
