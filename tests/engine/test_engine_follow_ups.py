"""A run that found work for another flow brings that flow forward (``FOLLOW_UPS``).

A pull that stored referrals brings deliver forward; a collect (or the risk lane's
collect) that queued write-backs, and a first delivery, bring push forward. An idle flow
is moved to now; a flow that is running already (and so may have passed the new work
by) runs once more as soon as it finishes, without waiting for its interval. The jobs
here run fake flows and a fake scheduler that records what it is asked: no clock, no
sleeps. The last test runs the real daemon: a session collected is written back long
before push's own interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.memory import MemoryTrust
from ehr_bridge.config import load_config
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.mapping import load_mapping
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.scheduler import FOLLOW_UPS, FlowJobs, run_daemon
from support.bridge import Bridge, running_bridge

Counts = dict[str, Any] | None


class Scheduler:
    """Records each ``modify_job``: the jobs brought forward, and to when."""

    def __init__(self) -> None:
        self.moved: list[tuple[str, datetime]] = []

    def modify_job(self, job_id: str, jobstore: str | None = None, **changes: Any) -> None:
        self.moved.append((job_id, changes["next_run_time"]))


class Flows:
    """Fake flows: each answers its counts; one can be held until the test lets it go."""

    def __init__(self, counts: dict[str, Counts]) -> None:
        self.counts = counts
        self.calls: list[str] = []
        self.hold: str | None = None
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, name: str, conn: Connection, store: Store, stop: threading.Event) -> Counts:
        self.calls.append(name)
        if name == self.hold and not self.started.is_set():
            self.started.set()
            assert self.release.wait(10), "never released"
        return self.counts.get(name)


@pytest.fixture
def conn(tmp_path: Path) -> Connection:
    trust = MemoryTrust()
    return Connection(
        name="c",
        mapping=load_mapping(bundled_mapping("iaptus.yaml")),
        source=trust,
        writer=trust,
        provider=FolderProvider(tmp_path / "provider"),
        provider_ref=ProviderRef(code="IESO01", display="Provider"),
    )


def _jobs(flows: Flows, stop: threading.Event | None = None) -> tuple[FlowJobs, Scheduler]:
    jobs = FlowJobs(None, stop or threading.Event(), runner=flows)  # type: ignore[arg-type]
    scheduler = Scheduler()
    jobs.scheduler = scheduler
    return jobs, scheduler


def test_the_follow_ups_are_deliver_after_pull_and_push_after_collect() -> None:
    assert FOLLOW_UPS == {
        "pull": ("stored", "deliver"),
        "deliver": ("delivered", "push"),
        "collect": ("queued", "push"),
        "risk": ("queued", "push"),
    }


@pytest.mark.parametrize(
    ("flow", "counts", "brought"),
    [
        ("pull", {"stored": 3}, "c:deliver"),
        ("collect", {"queued": 5}, "c:push"),
        ("risk", {"collected": 1, "queued": 2}, "c:push"),
        ("deliver", {"delivered": 1}, "c:push"),
    ],
)
def test_an_idle_flow_is_brought_forward_to_now(
    conn: Connection, flow: str, counts: Counts, brought: str
) -> None:
    jobs, scheduler = _jobs(Flows({flow: counts}))
    before = datetime.now(UTC)
    jobs.run(flow, conn)
    ((job_id, when),) = scheduler.moved
    assert job_id == brought
    assert before <= when <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("flow", "counts"),
    [
        ("pull", {"stored": 0, "unchanged": 40}),
        ("collect", {"stored": 2, "queued": 0}),
        ("deliver", {"redelivered": 3}),  # no first delivery: nothing queued
        ("push", {"written": 9}),
        ("pull", None),  # failed: recorded, and the next interval tries again
        ("pull", {"skipped": 1}),  # another daemon holds the lease
    ],
)
def test_a_run_that_found_nothing_for_another_flow_moves_nothing(
    conn: Connection, flow: str, counts: Counts
) -> None:
    jobs, scheduler = _jobs(Flows({flow: counts}))
    jobs.run(flow, conn)
    assert scheduler.moved == []


def _while_running(
    jobs: FlowJobs, flows: Flows, conn: Connection, held: str, meanwhile: Callable[[], None]
) -> None:
    """Run ``held`` in a thread; call ``meanwhile`` once it is under way, then let it finish."""
    flows.hold = held
    worker = threading.Thread(target=jobs.run, args=(held, conn))
    worker.start()
    assert flows.started.wait(10)
    meanwhile()
    flows.release.set()
    worker.join(10)
    assert not worker.is_alive()


def test_a_pull_finishing_during_a_deliver_makes_deliver_run_again_at_once(
    conn: Connection,
) -> None:
    flows = Flows({"pull": {"stored": 4}, "deliver": {"delivered": 0}})
    jobs, scheduler = _jobs(flows)
    _while_running(jobs, flows, conn, "deliver", lambda: jobs.run("pull", conn))
    # the one deliver job ran twice: the second run sees what the pull stored
    assert flows.calls == ["deliver", "pull", "deliver"]
    assert [job for job, _ in scheduler.moved] == []  # not left to its interval


def test_a_collect_finishing_during_a_push_makes_push_run_again(conn: Connection) -> None:
    flows = Flows({"risk": {"collected": 2, "queued": 6}, "push": {"written": 3}})
    jobs, _ = _jobs(flows)
    _while_running(jobs, flows, conn, "push", lambda: jobs.run("risk", conn))
    assert flows.calls == ["push", "risk", "push"]


def test_a_flow_runs_again_once_however_many_follow_ups_came_meanwhile(
    conn: Connection,
) -> None:
    flows = Flows({"pull": {"stored": 1}})
    jobs, _ = _jobs(flows)

    def three_pulls() -> None:
        for _ in range(3):
            jobs.run("pull", conn)

    _while_running(jobs, flows, conn, "deliver", three_pulls)
    assert flows.calls == ["deliver", "pull", "pull", "pull", "deliver"]


def test_stop_ends_the_runs_again(conn: Connection) -> None:
    stop = threading.Event()
    flows = Flows({"pull": {"stored": 1}})
    jobs, scheduler = _jobs(flows, stop)

    def pull_then_stop() -> None:
        jobs.run("pull", conn)
        stop.set()

    _while_running(jobs, flows, conn, "deliver", pull_then_stop)
    assert flows.calls == ["deliver", "pull"]
    assert scheduler.moved == []


# --- the real daemon -------------------------------------------------------------------

PUSH_ONLY_WHEN_BROUGHT_FORWARD = """
[connection.schedule]
pull_seconds = 0.3
deliver_seconds = 0.3
collect_seconds = 0.3
push_seconds = 600
risk_seconds = 300

[observability]
port = 0
"""


def _care_contacts(bridge: Bridge) -> int:
    return sum(len(e["care_contacts"]) for e in bridge.simulator.export()["referrals"])


def _all_delivered_and_accepted(bridge: Bridge) -> bool:
    referrals = bridge.store.referral_counts(bridge.conn.name)
    outbox = bridge.store.outbox_counts(bridge.conn.name)
    return 0 < referrals["pulled"] == referrals["delivered"] and set(outbox) == {"done"}


def _wait(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.mark.slow
def test_in_the_daemon_a_collect_that_queued_write_backs_brings_push_forward(
    tmp_path: Path,
) -> None:
    extra = PUSH_ONLY_WHEN_BROUGHT_FORWARD
    with running_bridge(tmp_path, seed=5, referrals=4, extra_config=extra) as bridge:
        schedule = load_config(bridge.config_path).connection[0].schedule
        stop = threading.Event()
        daemon = threading.Thread(
            target=run_daemon, args=([(bridge.conn, schedule)], bridge.store, stop)
        )
        daemon.start()
        try:
            _wait(lambda: _all_delivered_and_accepted(bridge))  # deliver's follow-up is done
            assert _care_contacts(bridge) == 0
            bridge.platform.step()  # the platform records sessions; collect finds them
            # push's own interval is 600 s: only collect's follow-up can write these
            _wait(lambda: _care_contacts(bridge) > 0)
        finally:
            stop.set()
            daemon.join(timeout=30)
        assert not daemon.is_alive()
