"""Push with several writes at the trust at once: still once each, in dependency order.

The trust is the in-memory fake with fault switches, behind a wrapper that makes every
call take a little while (so writes really overlap), serialises the fake's own state, and
records how many calls were in the trust at once and the order items landed in.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.adapters.base import WriteItem, WriteReceipt
from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.memory import Faults, MemoryTrust
from ehr_bridge.config import ScheduleConfig, load_config
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.errors import ConfigError, ConnectionStopError
from ehr_bridge.mapping import load_mapping
from ehr_bridge.retry import RetryPolicy
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.sim.platform import SyntheticPlatform
from ehr_bridge.store import Store
from ehr_bridge.sync.collect import collect
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.deliver import deliver
from ehr_bridge.sync.events import subscribe, unsubscribe
from ehr_bridge.sync.pull import pull
from ehr_bridge.sync.push import push, push_concurrency


class SlowTrust:
    """A thread-safe, slow front for MemoryTrust that watches how it is called."""

    concurrent_writes = True

    def __init__(self, inner: MemoryTrust, seconds: float = 0.01) -> None:
        self.inner = inner
        self.seconds = seconds
        self.lock = threading.Lock()
        self.inside = 0
        self.peak = 0
        self.landed: list[str] = []  # client references, in the order they were stored
        self.calls = 0
        self.on_call: Any = None

    def fetch_referrals(self, **kwargs: Any) -> Any:
        return self.inner.fetch_referrals(**kwargs)

    def write(self, item: WriteItem) -> WriteReceipt:
        return self._call(lambda: self.inner.write(item), item)

    def find(self, item: WriteItem) -> WriteReceipt | None:
        return self._call(lambda: self.inner.find(item), item)

    def _call(self, call: Any, item: WriteItem) -> Any:
        with self.lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
            self.calls += 1
            if self.on_call is not None:
                self.on_call(self.calls)
        try:
            time.sleep(self.seconds)
            with self.lock:
                before = len(self.inner.items)
                try:
                    return call()
                finally:
                    if len(self.inner.items) > before:
                        self.landed.append(item.client_reference)
        finally:
            with self.lock:
                self.inside -= 1


class OneAtATimeTrust(SlowTrust):
    """The same fake, but not declared thread safe."""

    concurrent_writes = False


def _records(count: int) -> list[dict[str, Any]]:
    export = TrustSimulator(seed=11, referrals=count).export()
    return [
        e["referral"] for e in export["referrals"] if e["referral"]["referred_on_to"] == "IESO01"
    ]


def _bridge(
    tmp_path: Path,
    faults: Faults | None = None,
    *,
    width: int = 8,
    kind: type[SlowTrust] = SlowTrust,
    max_attempts: int = 30,
) -> tuple[Connection, Store, SlowTrust]:
    trust = kind(MemoryTrust(_records(6), faults=faults))
    conn = _connection(tmp_path, trust, width, max_attempts)
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    pull(conn, store)
    deliver(conn, store)
    SyntheticPlatform(tmp_path / "provider", seed=11).step()
    collect(conn, store)
    return conn, store, trust


def _connection(tmp_path: Path, trust: SlowTrust, width: int, max_attempts: int) -> Connection:
    conn = Connection(
        name="fake",
        mapping=load_mapping(bundled_mapping("iaptus.yaml")),
        source=trust,  # type: ignore[arg-type]
        writer=trust,  # type: ignore[arg-type]
        provider=FolderProvider(tmp_path / "provider"),
        provider_ref=ProviderRef(code="IESO01", display="Provider"),
        test_connection=True,  # synthetic patients: test-range NHS numbers
        retry=RetryPolicy(max_attempts=max_attempts, base_delay=0, max_delay=0),
    )
    conn.push_concurrency = width
    return conn


def _push_until_settled(conn: Connection, store: Store, rounds: int = 60) -> None:
    for _ in range(rounds):
        push(conn, store)
        if not store.outbox_counts(conn.name).get("pending"):
            return


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_concurrent_writes_under_faults_land_once_each(tmp_path: Path, seed: int) -> None:
    conn, store, trust = _bridge(tmp_path, Faults(transient=0.2, ambiguous=0.2, seed=seed))
    queued = len(store.outbox_rows(connection="fake"))
    _push_until_settled(conn, store)
    assert store.outbox_counts("fake") == {"done": queued}
    assert len(trust.inner.items) == queued == len(set(trust.landed))
    done = store.outbox_rows(connection="fake", state="done")
    assert {r.trust_id for r in done} == {str(v["id"]) for v in trust.inner.items.values()}
    assert 1 < trust.peak <= 8  # writes overlapped, never more than the setting
    assert trust.inner.write_calls > queued  # the faults really fired


def test_a_dependant_lands_only_after_its_care_contact(tmp_path: Path) -> None:
    conn, store, trust = _bridge(tmp_path, Faults(transient=0.3, seed=5))
    _push_until_settled(conn, store)
    rows = store.outbox_rows(connection="fake")
    position = {reference: n for n, reference in enumerate(trust.landed)}
    dependants = [r for r in rows if r.depends_on is not None]
    assert dependants
    for row in dependants:
        assert position[row.depends_on] < position[row.id]  # type: ignore[index]
    trust_ids = {r.id: r.trust_id for r in rows}
    stored = {reference: item for (_, _, reference), item in trust.inner.items.items()}
    for row in (r for r in dependants if r.kind in ("clinical_note", "assessment")):
        # and a note or a score carries the trust's id of its care contact
        assert stored[row.id]["care_contact_id"] == trust_ids[row.depends_on]  # type: ignore[index]


def test_the_setting_bounds_the_writes_at_once(tmp_path: Path) -> None:
    conn, store, trust = _bridge(tmp_path, width=3)
    _push_until_settled(conn, store)
    assert trust.peak == 3 or (trust.peak < 3 and trust.calls < 3)
    assert len(trust.landed) == len(store.outbox_rows(connection="fake"))


def test_concurrency_one_writes_one_by_one_risks_then_oldest_first(tmp_path: Path) -> None:
    conn, store, trust = _bridge(tmp_path, width=1)
    first = sorted(
        (r for r in store.outbox_rows(connection="fake") if r.depends_on is None),
        key=lambda r: (r.priority, r.created_at, r.id),  # risks first, then oldest
    )[:20]
    push(conn, store)
    assert trust.peak == 1
    assert trust.landed[:20] == [r.id for r in first]
    assert store.outbox_counts("fake") == {"done": len(store.outbox_rows(connection="fake"))}


def test_a_writer_not_declared_thread_safe_is_called_one_at_a_time(tmp_path: Path) -> None:
    conn, store, trust = _bridge(tmp_path, width=8, kind=OneAtATimeTrust)
    assert push_concurrency(conn) == 1
    push(conn, store)
    assert trust.peak == 1
    assert len(trust.landed) == len(store.outbox_rows(connection="fake"))


def test_stop_finishes_writes_in_hand_and_hands_back_the_rest(tmp_path: Path) -> None:
    conn, store, trust = _bridge(tmp_path)
    stop = threading.Event()
    trust.on_call = lambda calls: stop.set() if calls == 5 else None
    counts = push(conn, store, stop)
    rows = store.outbox_rows(connection="fake")
    assert {r.state for r in rows} == {"done", "pending"}  # nothing left leased
    done = [r for r in rows if r.state == "done"]
    assert len(done) == counts.written == len(trust.landed) >= 5
    assert all(r.attempts == 0 for r in rows if r.state == "pending")  # never tried
    push(conn, store)  # and the next run writes the rest, each once
    assert len(trust.inner.items) == len(rows) == len(set(trust.landed))


def test_a_refused_connection_stops_every_worker_and_releases_rows(tmp_path: Path) -> None:
    conn, store, trust = _bridge(tmp_path)

    def refuse(_item: object) -> object:
        time.sleep(0.01)
        raise ConnectionStopError("credentials refused")

    trust.inner.write = refuse  # type: ignore[method-assign]
    with pytest.raises(ConnectionStopError):
        push(conn, store)
    rows = store.outbox_rows(connection="fake")
    assert {r.state for r in rows} == {"pending"}
    assert all(r.attempts == 0 for r in rows)


def test_every_attempt_is_published_and_counted(tmp_path: Path) -> None:
    conn, store, _ = _bridge(tmp_path, Faults(transient=0.3, terminal=0.05, seed=9))
    seen: list[str] = []
    lock = threading.Lock()

    class Observer:
        def on_event(self, event: Any) -> None:
            with lock:
                seen.append(getattr(event, "outcome", "flow"))

    observer = Observer()
    subscribe(observer)
    try:
        counts = push(conn, store)
    finally:
        unsubscribe(observer)
    total = counts.written + counts.already_present + counts.retried_later + counts.dead
    assert len(seen) == total and seen.count("written") == counts.written
    assert seen.count("retry") == counts.retried_later and seen.count("dead") == counts.dead
    assert counts.retried_later and counts.dead  # the faults fired


def test_two_daemons_on_one_sqlite_file_never_double_a_write(tmp_path: Path) -> None:
    conn, store, trust = _bridge(tmp_path, Faults(ambiguous=0.2, seed=3))
    queued = len(store.outbox_rows(connection="fake"))
    other = _connection(tmp_path, trust, 8, 30)
    other.owner = "elsewhere:1"
    other_store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    errors: list[BaseException] = []

    def run(c: Connection, s: Store) -> None:
        try:
            _push_until_settled(c, s)
        except BaseException as exc:  # "database is locked" would land here
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=pair) for pair in ((conn, store), (other, other_store))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _push_until_settled(conn, store)
    assert store.outbox_counts("fake") == {"done": queued}
    assert len(trust.inner.items) == queued == len(trust.landed)


def test_push_concurrency_is_validated_with_its_key(tmp_path: Path) -> None:
    assert ScheduleConfig().push_concurrency == 8
    base = (
        "[[connection]]\nname='a'\nmapping='m'\nprovider_org={code='P'}\n"
        "trust={adapter='iaptus'}\nprovider={adapter='folder'}\n"
    )
    path = tmp_path / "ehr-bridge.toml"
    for bad in ("0", "65", "'4'", "2.5", "true"):
        path.write_text(base + f"schedule={{push_concurrency={bad}}}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert info.value.key == "connection[0].schedule.push_concurrency", bad
    for good in (1, 64):
        path.write_text(base + f"schedule={{push_concurrency={good}}}\n")
        assert load_config(path).connection[0].schedule.push_concurrency == good


def test_the_configured_push_concurrency_reaches_the_connection(tmp_path: Path) -> None:
    from ehr_bridge.demo import prepare_workdir
    from ehr_bridge.sync.connection import build_connections

    path = prepare_workdir(tmp_path, "http://127.0.0.1:9", "token")
    text = path.read_text("utf-8")
    path.write_text(text + "\n[connection.schedule]\npush_concurrency = 3\n", "utf-8")
    (conn,) = build_connections(load_config(path))
    assert conn.push_concurrency == 3
