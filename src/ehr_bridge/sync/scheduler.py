"""The daemon: APScheduler runs each flow of each connection at its configured interval.

Only wiring lives here. Each connection has an executor of its own with one worker, so
its flows never overlap (they also hold its lock) and a connection whose trust hangs
holds only its own worker: the others' jobs run on time whatever it does. Each job runs
under a fresh correlation id, so its log lines can be told from the others'. A run that
found work for another flow brings that flow forward (``FOLLOW_UPS``): a pull that stored
new or changed referrals, deliver; a collect (or the risk lane's) that queued
write-backs, and a first delivery (its "accepted"), push. The flow runs now, or, if it is
running already, once more as soon as it finishes: a referral reaches the provider within
the poll interval, not the poll interval plus the deliver interval. With ``[security]
retention_days`` set, the retention purge runs every ``retention_interval_hours`` in a
thread of its own (``sync.retention.RetentionJob``).

On SIGTERM or SIGINT the stop event is set: running flows finish the unit of work in hand
(a page, a submission, an outbox row) and return; a call still at a trust is abandoned
within ``retry.STOP_GRACE_SECONDS`` and a backoff ends at once, so the scheduler's wait
for them is short whatever a trust does. Then the services (the observability server
and alerts) stop, and the process exits. Before the first job, the leases of dead
processes on this host are freed, waiting for the database if it cannot be written yet
(``sync.startup``).
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from ehr_bridge.config import ScheduleConfig
from ehr_bridge.errors import EhrBridgeError
from ehr_bridge.logs import correlation, new_cycle_id
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection, process_alive
from ehr_bridge.sync.cycle import FLOWS, run_flow
from ehr_bridge.sync.retention import RETENTION_FLOW, RetentionJob
from ehr_bridge.sync.startup import until_ready

log = logging.getLogger(__name__)


class Service(Protocol):
    """Something that runs beside the scheduler (the observability server, the alerts)."""

    def start(self) -> None:
        """Start; raise ConfigError if it cannot (the daemon then does not start)."""
        ...

    def stop(self) -> None:
        """Stop; called once the scheduler has finished its work in hand."""
        ...


#: a run of a flow (key) that counted this (first) brings that flow (second) forward
FOLLOW_UPS: dict[str, tuple[str, str]] = {
    "pull": ("stored", "deliver"),  # new or changed referrals for the provider
    "deliver": ("delivered", "push"),  # a first delivery queues "accepted" for the trust
    "collect": ("queued", "push"),  # write-backs for the trust
    "risk": ("queued", "push"),  # the risk lane's collect queues routine write-backs too
}

Runner = Callable[[str, Connection, Store, threading.Event], "dict[str, Any] | None"]


class Rescheduler(Protocol):
    """What the jobs need of the scheduler: move a job's next run (APScheduler's own)."""

    def modify_job(self, job_id: str, jobstore: str | None = None, **changes: Any) -> Any:
        """Change a job; here always ``next_run_time``."""
        ...


class FlowJobs:
    """The function APScheduler calls for every job, and what the jobs share.

    A run that found work for another flow (``FOLLOW_UPS``) brings that flow forward: to
    now if it is idle, or, if it is running already (and so may have passed the new work
    by), once more as soon as it finishes, without waiting for its interval.
    """

    def __init__(self, store: Store, stop: threading.Event, runner: Runner | None = None) -> None:
        self.store = store
        self.stop = stop
        self.scheduler: Rescheduler | None = None
        self._runner: Runner = runner or _run_logged
        self._active: set[str] = set()
        self._again: set[str] = set()
        self._lock = threading.Lock()

    def run(self, name: str, conn: Connection) -> None:
        """Run one flow under a fresh cycle id, again while work for it came in meanwhile."""
        job_id = f"{conn.name}:{name}"
        with self._lock:
            self._active.add(job_id)
        try:
            while not self.stop.is_set():
                counts = self._runner(name, conn, self.store, self.stop)
                self._follow_up(name, conn, counts)
                with self._lock:
                    if job_id not in self._again:
                        break
                    self._again.discard(job_id)
        finally:
            with self._lock:
                self._active.discard(job_id)
                self._again.discard(job_id)

    def bring_forward(self, conn: Connection, flow: str) -> None:
        """Run ``flow`` of ``conn`` now, or once more right after the run in hand."""
        job_id = f"{conn.name}:{flow}"
        with self._lock:
            if job_id in self._active:
                self._again.add(job_id)  # it runs again as soon as it finishes
                return
        if self.scheduler is not None and not self.stop.is_set():
            self.scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))

    def _follow_up(self, name: str, conn: Connection, counts: dict[str, Any] | None) -> None:
        follow = FOLLOW_UPS.get(name)
        if follow is not None and counts and counts.get(follow[0]):
            self.bring_forward(conn, follow[1])


def _run_logged(
    name: str, conn: Connection, store: Store, stop: threading.Event
) -> dict[str, Any] | None:
    with correlation(cycle=new_cycle_id()):
        try:
            return run_flow(name, conn, store, stop)
        except EhrBridgeError:
            return None  # recorded by run_flow; the next interval tries again
        except Exception:  # keep the daemon alive; run_flow recorded the type
            log.exception("flow crashed", extra={"connection": conn.name, "flow": name})
            return None


def executor_of(conn: Connection, flow: str = "") -> str:
    """The executor a flow runs in: the connection's own (one worker), or the risk lane's.

    The risk lane has one more of its own, so a risk never waits for a push.
    """
    if flow == "risk":
        return f"risk:{conn.name}"
    return f"connection:{conn.name}"


def build_scheduler(
    connections: Sequence[tuple[Connection, ScheduleConfig]],
    store: Store,
    stop: threading.Event,
    retention: RetentionJob | None = None,
) -> BackgroundScheduler:
    """One interval job per flow per connection, first run immediately; and the purge.

    Every connection's jobs go to its own one-worker executor: a slow connection queues
    only its own flows, never another connection's. The retention purge (``retention``,
    when ``[security] retention_days`` is set) has an executor of its own too.
    """
    executors = {
        executor_of(conn, flow): ThreadPoolExecutor(max_workers=1)
        for conn, _ in connections
        for flow in ("", "risk")
    }
    if retention is not None:
        executors[RETENTION_FLOW] = ThreadPoolExecutor(max_workers=1)
    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors=executors,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    jobs = FlowJobs(store, stop)
    jobs.scheduler = scheduler
    now = datetime.now(UTC)
    for conn, schedule in connections:
        for flow in FLOWS:
            scheduler.add_job(
                jobs.run,
                "interval",
                seconds=getattr(schedule, f"{flow}_seconds"),
                args=(flow, conn),
                id=f"{conn.name}:{flow}",
                executor=executor_of(conn, flow),
                next_run_time=now,
            )
    if retention is not None:
        scheduler.add_job(
            _retention_logged,
            "interval",
            seconds=retention.interval.total_seconds(),
            args=(retention, stop),
            id=RETENTION_FLOW,
            executor=RETENTION_FLOW,
            next_run_time=retention.first_run(),
        )
    return scheduler


def _retention_logged(job: RetentionJob, stop: threading.Event) -> None:
    with correlation(cycle=new_cycle_id()):
        try:
            job.run(stop)
        except Exception as exc:  # the database, most likely: the next interval tries again
            log.error("retention purge not run (%s)", type(exc).__name__)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """Set ``stop`` on SIGTERM or SIGINT while the block runs (on the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping on signal %s: finishing work in hand", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def free_orphaned_leases(store: Store) -> int:
    """Free the outbox and flow leases of dead processes on this host; how many."""
    host = socket.gethostname()
    freed = store.expire_orphaned_leases(host, process_alive)
    freed += store.expire_orphaned_flow_leases(host, process_alive)
    if freed:
        log.info("freed leases of stopped processes on this host", extra={"rows": freed})
    return freed


def run_daemon(
    connections: Sequence[tuple[Connection, ScheduleConfig]],
    store: Store,
    stop: threading.Event | None = None,
    *,
    services: Sequence[Service] = (),
    leases_freed: bool = False,
    retention: RetentionJob | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set), then finish in-hand work and return.

    ``services`` start before the first job and stop after the last one has finished.
    The leases of dead processes are freed first (unless the caller did: ``leases_freed``),
    waiting for a database that cannot be written yet rather than exiting. ``retention``
    is the scheduled purge, when ``[security] retention_days`` is set.
    """
    stop = stop or threading.Event()
    with stop_on_signals(stop):
        if (
            not leases_freed
            and until_ready(lambda: free_orphaned_leases(store), stop, what="start-up") is None
        ):
            return
        started: list[Service] = []
        try:
            for service in services:
                service.start()
                started.append(service)
            _schedule_until_stopped(connections, store, stop, retention)
        finally:
            for service in reversed(started):
                service.stop()
            log.info("daemon stopped")


def _schedule_until_stopped(
    connections: Sequence[tuple[Connection, ScheduleConfig]],
    store: Store,
    stop: threading.Event,
    retention: RetentionJob | None,
) -> None:
    scheduler = build_scheduler(connections, store, stop, retention)
    scheduler.start()
    log.info("daemon started", extra={"connections": len(connections)})
    try:
        while not stop.wait(0.5):
            pass
    finally:
        scheduler.shutdown(wait=True)
