"""A leased flow that outlives its lease keeps it: no second worker takes the flow over."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.memory import MemoryTrust
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.mapping import load_mapping
from ehr_bridge.store import Store
from ehr_bridge.sync import cycle
from ehr_bridge.sync.connection import Connection


@dataclass
class Nothing:
    """The counts of a flow that did nothing."""


@pytest.fixture
def conn(tmp_path: Path) -> Connection:
    trust = MemoryTrust([])
    return Connection(
        name="fake",
        mapping=load_mapping(bundled_mapping("iaptus.yaml")),
        source=trust,
        writer=trust,
        provider=FolderProvider(tmp_path / "provider"),
        provider_ref=ProviderRef(code="IESO01", display="Provider"),
        test_connection=True,  # synthetic patients: test-range NHS numbers
        lease_seconds=0.3,
        owner="here:1",
    )


def test_a_long_flow_keeps_its_lease_and_frees_it_at_the_end(
    conn: Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    taken_by_other: list[bool] = []

    def slow_collect(_conn: Connection, s: Store, _stop: threading.Event | None) -> Any:
        for _ in range(4):  # four lease lengths in all
            time.sleep(0.3)
            taken_by_other.append(s.take_flow_lease("fake", "collect", "there:2", 0.3))
        return Nothing()

    monkeypatch.setitem(cycle.FLOWS, "collect", slow_collect)
    cycle.run_flow("collect", conn, store)
    assert taken_by_other == [False, False, False, False]
    assert store.take_flow_lease("fake", "collect", "there:2", 0.3)  # released at the end
