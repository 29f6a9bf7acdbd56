"""The daemon: APScheduler runs each flow of each connection at its configured interval.

Only wiring lives here. Each job runs under its connection's lock, so flows of one
connection never overlap. On SIGTERM or SIGINT the stop event is set: running flows
finish the unit of work in hand (a page, a submission, an outbox row) and return, the
scheduler waits for them, and the process exits.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler

from ehr_bridge.config import ScheduleConfig
from ehr_bridge.errors import EhrBridgeError
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection, process_alive
from ehr_bridge.sync.cycle import FLOWS, run_flow

log = logging.getLogger(__name__)


def _job(name: str, conn: Connection, store: Store, stop: threading.Event) -> None:
    if stop.is_set():
        return
    try:
        run_flow(name, conn, store, stop)
    except EhrBridgeError:
        pass  # recorded by run_flow; the next interval tries again
    except Exception:  # keep the daemon alive; run_flow recorded the type
        log.exception("flow crashed", extra={"connection": conn.name, "flow": name})


def build_scheduler(
    connections: Sequence[tuple[Connection, ScheduleConfig]], store: Store, stop: threading.Event
) -> BackgroundScheduler:
    """One interval job per flow per connection, first run immediately."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"default": {"type": "threadpool", "max_workers": max(2, len(connections) * 2)}},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    now = datetime.now(UTC)
    for conn, schedule in connections:
        for flow in FLOWS:
            scheduler.add_job(
                _job,
                "interval",
                seconds=getattr(schedule, f"{flow}_seconds"),
                args=(flow, conn, store, stop),
                id=f"{conn.name}:{flow}",
                next_run_time=now,
            )
    return scheduler


def run_daemon(
    connections: Sequence[tuple[Connection, ScheduleConfig]],
    store: Store,
    stop: threading.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set), then finish in-hand work and return."""
    stop = stop or threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping on signal %s: finishing work in hand", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    host = socket.gethostname()
    freed = store.expire_orphaned_leases(host, process_alive)
    freed += store.expire_orphaned_flow_leases(host, process_alive)
    if freed:
        log.info("freed leases of stopped processes on this host", extra={"rows": freed})
    scheduler = build_scheduler(connections, store, stop)
    scheduler.start()
    log.info("daemon started", extra={"connections": len(connections)})
    try:
        while not stop.wait(0.5):
            pass
    finally:
        scheduler.shutdown(wait=True)
        log.info("daemon stopped")
