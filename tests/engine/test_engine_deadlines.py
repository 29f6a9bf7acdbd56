"""Deadlines and stop, call by call: a dripping or hanging trust cannot hold a flow.

Every trust here is a real server on 127.0.0.1 (``support.hostile_peer``) that either
sends a well-formed answer one byte at a time (each byte resets the socket timeouts, so
only a whole-request deadline ends the call) or accepts and never answers.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from ehr_bridge.adapters.base import WriteItem
from ehr_bridge.adapters.hl7v2.mllp import MllpClient
from ehr_bridge.adapters.iaptus import create
from ehr_bridge.config import ScheduleConfig
from ehr_bridge.errors import (
    CallDeadlineError,
    FlowDeadlineError,
    StoppedError,
    TransientError,
)
from ehr_bridge.retry import STOP_GRACE_SECONDS, RetryPolicy, call_with_retries, flow_scope
from ehr_bridge.sync.cycle import run_flow
from ehr_bridge.sync.scheduler import run_daemon
from ehr_bridge.sync.startup import database_fault, until_ready
from support.bridge import TOKEN, Bridge, running_bridge
from support.hostile_peer import MLLP_END, HostilePeer, Mode

#: the gap between two bytes of a dripped answer: far below every socket timeout
DRIP = 0.2


@pytest.fixture(params=["drip", "hang"])
def trust(request: pytest.FixtureRequest) -> Iterator[HostilePeer]:
    with HostilePeer(request.param, byte_seconds=DRIP) as peer:
        yield peer


def _client(peer: HostilePeer, monkeypatch: pytest.MonkeyPatch, **options: Any) -> Any:
    monkeypatch.setenv("HOSTILE_TOKEN", "t")
    return create(
        {"base_url": f"{peer.base_url}/api/v1", "token_env": "HOSTILE_TOKEN", **options},
        base_dir=Path("."),
        key="connection[0].trust",
        provider_code="IESO01",
    )


def _timed(call: Any) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        call()
    return caught.value, time.monotonic() - started


def _item() -> WriteItem:
    return WriteItem("care_contact", "R1", "ref-1", {"date": "2026-01-01"})


def test_a_read_ends_at_its_whole_request_deadline(
    trust: HostilePeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Socket timeouts of 10 s never fire against 0.2 s drips: the 1 s deadline does."""
    client = _client(trust, monkeypatch, timeout_seconds=1, read_attempts=1)
    error, seconds = _timed(lambda: client.fetch_referrals(updated_since=None, page=None))
    assert isinstance(error, CallDeadlineError) and not error.ambiguous
    assert "within 1 s" in error.safe_message
    assert 0.9 < seconds < 2.0


def test_a_write_cut_off_at_its_deadline_is_ambiguous(
    trust: HostilePeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(trust, monkeypatch, timeout_seconds=1)
    error, seconds = _timed(lambda: client.write(_item()))
    assert isinstance(error, CallDeadlineError) and error.ambiguous  # it may have landed
    assert seconds < 2.0


def test_stop_abandons_a_call_in_flight_after_the_grace(
    trust: HostilePeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(trust, monkeypatch, timeout_seconds=120, read_attempts=4)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with flow_scope("pull", 600, stop):
        error, seconds = _timed(lambda: client.fetch_referrals(updated_since=None, page=None))
    assert isinstance(error, StoppedError)
    assert seconds < 0.3 + STOP_GRACE_SECONDS + 1.0
    assert trust.requests == 1  # a stopped read is not tried again


def test_the_flow_deadline_ends_a_read_and_its_retries(
    trust: HostilePeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four attempts of 1 s each plus backoff would take over 4 s: the run has 2.5 s."""
    client = _client(trust, monkeypatch, timeout_seconds=1, read_attempts=4)
    with flow_scope("pull", 2.5):
        error, seconds = _timed(lambda: client.fetch_referrals(updated_since=None, page=None))
    assert isinstance(error, FlowDeadlineError)
    assert "flow_deadline_seconds" in error.safe_message
    assert seconds < 3.5


def test_nothing_is_sent_once_stop_is_set(
    trust: HostilePeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(trust, monkeypatch)
    stop = threading.Event()
    stop.set()
    with flow_scope("push", 600, stop):
        error, seconds = _timed(lambda: client.write(_item()))
    assert isinstance(error, StoppedError) and not error.ambiguous  # nothing left us
    assert seconds < 0.5 and trust.requests == 0


def test_backoff_waits_on_the_stop_event() -> None:
    """The issue's case: four 15 s retries kept SIGTERM waiting a minute."""
    stop = threading.Event()
    calls = 0

    def refused() -> None:
        nonlocal calls
        calls += 1
        raise TransientError("HTTP 503")

    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with flow_scope("pull", 600, stop), pytest.raises(StoppedError):
        call_with_retries(RetryPolicy(max_attempts=4, base_delay=15, max_delay=15), refused)
    assert time.monotonic() - started < 1.0
    assert calls == 1


def test_a_backoff_that_would_pass_the_flow_deadline_is_not_begun() -> None:
    def refused() -> None:
        raise TransientError("HTTP 503", retry_after=60)

    started = time.monotonic()
    with flow_scope("pull", 5), pytest.raises(FlowDeadlineError):
        call_with_retries(RetryPolicy(max_attempts=4, base_delay=1, max_delay=60), refused)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("mode", ["drip", "hang"])
def test_an_mllp_send_ends_at_its_deadline(mode: Mode) -> None:
    ack = b"\x0bMSH|^~\\&|T|T|E|E|20260101||ACK|ref-1|P|2.5.1\rMSA|AA|ref-1\r\x1c\r"
    with HostilePeer(mode, ack, request_end=MLLP_END, byte_seconds=DRIP) as peer:
        client = MllpClient("127.0.0.1", peer.port, timeout=1.0)
        error, seconds = _timed(lambda: client.exchange(b"MSH|^~\\&|E|E|T|T|x"))
        assert isinstance(error, CallDeadlineError) and error.ambiguous
        assert 0.9 < seconds < 2.0
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        slow = MllpClient("127.0.0.1", peer.port, timeout=120)
        with flow_scope("push", 600, stop):
            error, seconds = _timed(lambda: slow.exchange(b"MSH|^~\\&|E|E|T|T|x"))
        assert isinstance(error, StoppedError) and error.ambiguous
        assert seconds < 0.3 + STOP_GRACE_SECONDS + 1.0


# --- push: the outbox row stays safe ---------------------------------------------------


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[Bridge]:
    with running_bridge(tmp_path, seed=5, referrals=4) as bridge:
        run_flow("pull", bridge.conn, bridge.store)
        run_flow("deliver", bridge.conn, bridge.store)  # queues "accepted" for each referral
        yield bridge


def _hanging_writer(bridge: Bridge, peer: HostilePeer, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HOSTILE_TOKEN", TOKEN)
    return dataclasses.replace(bridge.conn, writer=_client(peer, monkeypatch, timeout_seconds=120))


def _written_refs(bridge: Bridge) -> list[str]:
    return [
        event["client_reference"]
        for entry in bridge.simulator.export()["referrals"]
        for event in entry["status_events"]
    ]


def test_a_push_stopped_mid_write_keeps_every_row_safe(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued = bridge.store.outbox_rows(connection=bridge.conn.name, state="pending")
    assert queued
    with HostilePeer("hang") as peer:
        hanging = _hanging_writer(bridge, peer, monkeypatch)
        stop = threading.Event()
        threading.Timer(0.5, stop.set).start()
        started = time.monotonic()
        counts = run_flow("push", hanging, bridge.store, stop)
        assert time.monotonic() - started < 0.5 + STOP_GRACE_SECONDS + 1.5
        assert peer.requests > 0
    rows = bridge.store.outbox_rows(connection=bridge.conn.name)
    assert {r.state for r in rows} == {"pending"}  # none dead, none left in flight
    sent = [r for r in rows if r.last_error_code == "stopped"]
    assert sent and all(r.attempts == 1 for r in sent)  # may have landed: counted
    assert all(r.attempts == 0 for r in rows if r not in sent)  # never sent: unattempted
    assert counts["dead"] == 0
    # the next push writes each one exactly once, asking the trust first where it was sent
    again = run_flow("push", bridge.conn, bridge.store)
    assert again["written"] == len(queued)
    refs = _written_refs(bridge)
    assert sorted(refs) == sorted(r.id for r in queued)


def test_a_push_at_its_deadline_lets_go_and_the_next_run_goes_on(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HostilePeer("drip", byte_seconds=DRIP) as peer:
        slow = dataclasses.replace(
            _hanging_writer(bridge, peer, monkeypatch), flow_deadline_seconds=1.0
        )
        started = time.monotonic()
        counts = run_flow("push", slow, bridge.store)
        assert time.monotonic() - started < 2.5
    assert counts["dead"] == 0 and counts["retried_later"] > 0
    rows = bridge.store.outbox_rows(connection=bridge.conn.name)
    assert {r.state for r in rows} == {"pending"}
    assert {r.last_error_code for r in rows if r.attempts} == {"flow_deadline"}
    run_flow("push", bridge.conn, bridge.store)
    assert len(_written_refs(bridge)) == len(set(_written_refs(bridge))) == len(rows)


# --- start-up on a database that cannot be written --------------------------------------


class _FullDisk:
    """The store, but its start-up writes fail as on a full disk the first ``times`` tries."""

    def __init__(self, store: Any, times: int) -> None:
        self._store = store
        self.failures = times

    def expire_orphaned_flow_leases(self, *args: Any) -> int:
        if self.failures:
            self.failures -= 1
            raise OperationalError("UPDATE flow_lease", {}, Exception("database or disk is full"))
        return int(self._store.expire_orphaned_flow_leases(*args))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_daemon_started_on_a_full_disk_waits_then_runs(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    full = _FullDisk(bridge.store, times=2)
    queued = len(bridge.store.outbox_rows(connection=bridge.conn.name))
    stop = threading.Event()
    daemon = threading.Thread(
        target=run_daemon, args=([(bridge.conn, _schedule())], full, stop), daemon=True
    )
    caplog.set_level("INFO")
    daemon.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _done(bridge) < queued:
            time.sleep(0.1)
        assert full.failures == 0
        assert _done(bridge) == queued
    finally:
        stop.set()
        daemon.join(timeout=10)
    assert not daemon.is_alive()
    waits = [r.getMessage() for r in caplog.records if "state database unavailable" in r.message]
    assert len(waits) == 2 and "(disk_full, OperationalError)" in waits[0]
    assert "database or disk is full" not in caplog.text  # the driver's text is not repeated


def _done(bridge: Bridge) -> int:
    return bridge.store.outbox_counts(bridge.conn.name).get("done", 0)


def _schedule() -> ScheduleConfig:
    return ScheduleConfig(
        pull_seconds=0.3, deliver_seconds=0.3, collect_seconds=0.3, push_seconds=0.3
    )


def test_a_database_fault_is_named_from_a_closed_list() -> None:
    def fault(text: str) -> OperationalError:
        return OperationalError("SELECT 1", {}, Exception(text))

    assert database_fault(fault("database or disk is full")) == "disk_full"
    assert database_fault(fault("attempt to write a readonly database")) == "not_writable"
    refused = 'connection to server at "127.0.0.1", port 1 failed: Connection refused'
    assert database_fault(fault(refused)) == "unreachable"
    assert database_fault(fault("something a driver says about <a patient>")) == "unavailable"
    assert database_fault(FileExistsError(17, "exists")) == "cannot_open"


def test_stop_ends_the_wait_for_the_database_at_once() -> None:
    stop = threading.Event()
    hung = threading.Event()

    def connect_that_hangs() -> None:
        hung.wait(60)

    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    assert until_ready(connect_that_hangs, stop, what="start-up") is None
    assert time.monotonic() - started < 1.0
    hung.set()
