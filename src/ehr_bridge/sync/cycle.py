"""One cycle: the flows in order for one connection, each recorded for `status`.

A flow that fails is recorded with its PHI-free message and the next flow still runs,
except after ConnectionStopError (credentials refused, endpoint gone), which ends the
connection's cycle. Unknown exceptions are recorded by type only: their text might
carry data we did not write.

Every flow run logs exactly one line of its own: ``<flow> done`` at INFO with the
connection, the flow, its seconds and every count, or ``<flow> failed`` at ERROR with the
error code (ids, codes and numbers only).

Each flow runs inside ``retry.flow_scope``: its deadline
(``[connection.schedule] flow_deadline_seconds``) starts once it holds the connection's
lock, and every outbound call and backoff in it ends at that deadline or on stop.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from ehr_bridge.errors import ConnectionStopError, EhrBridgeError
from ehr_bridge.logs import correlation, new_cycle_id
from ehr_bridge.retry import flow_scope
from ehr_bridge.store import Store, utcnow
from ehr_bridge.sync.collect import collect
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.deliver import deliver
from ehr_bridge.sync.events import FlowFinished, publish
from ehr_bridge.sync.pull import pull
from ehr_bridge.sync.push import push
from ehr_bridge.sync.risk_lane import risk_lane

log = logging.getLogger(__name__)
T = TypeVar("T")

Flow = Callable[[Connection, Store, threading.Event | None], Any]
FLOWS: dict[str, Flow] = {
    "pull": pull,
    "deliver": deliver,
    "collect": collect,
    "push": push,
    "risk": risk_lane,
}


#: flows that walk one cursor or folder: one worker at a time per connection
LEASED_FLOWS = frozenset({"pull", "deliver", "collect"})
#: flows that never wait for the connection's lock (the risk lane: ``sync.risk_lane``)
UNLOCKED_FLOWS = frozenset({"risk"})


def run_flow(
    name: str, conn: Connection, store: Store, stop: threading.Event | None = None
) -> dict[str, Any]:
    """Run one flow under the connection's lock (and flow lease) and record the run."""
    if name not in LEASED_FLOWS:
        return _run_recorded(name, conn, store, stop)
    # collect is also run by the risk lane: this process's lock first, then the lease
    local = conn.collect_lock if name == "collect" else contextlib.nullcontext()
    with local:
        if not store.take_flow_lease(conn.name, name, conn.owner, conn.lease_seconds):
            return {"skipped": 1}  # another worker is running it; push is shared row by row
        # renewed while it runs: a backfill or a large collect outlives one lease, and a
        # second daemon must not take the flow over half-way (double the work)
        with lease_kept(store, conn.name, name, conn.owner, conn.lease_seconds):
            return _run_recorded(name, conn, store, stop)


@contextmanager
def lease_kept(
    store: Store, connection: str, flow: str, owner: str, seconds: float
) -> Iterator[None]:
    """Renew a flow lease ``owner`` holds every third of ``seconds``, then release it.

    A failed renewal is logged and the work goes on.
    """
    done = threading.Event()
    where = {"connection": connection, "flow": flow}

    def renew() -> None:
        while not done.wait(seconds / 3):
            try:
                if not store.take_flow_lease(connection, flow, owner, seconds):
                    log.warning("flow lease lost", extra=where)
            except Exception as exc:  # the work reports database trouble itself
                log.warning("flow lease renewal failed (%s)", type(exc).__name__, extra=where)

    keeper = threading.Thread(target=renew, name=f"lease-{connection}-{flow}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join()
        store.release_flow_lease(connection, flow, owner)


def _run_recorded(
    name: str, conn: Connection, store: Store, stop: threading.Event | None
) -> dict[str, Any]:
    lock = contextlib.nullcontext() if name in UNLOCKED_FLOWS else conn.lock
    with lock, flow_scope(name, conn.flow_deadline_seconds, stop):
        started, clock = utcnow(), time.monotonic()
        try:
            counts = dataclasses.asdict(FLOWS[name](conn, store, stop))
        except EhrBridgeError as exc:
            _finished(conn, store, name, started, clock, {}, exc.safe_message, exc.code)
            raise
        except Exception as exc:
            message = f"internal error ({type(exc).__name__})"
            _finished(conn, store, name, started, clock, {}, message, "internal_error")
            raise
    _finished(conn, store, name, started, clock, counts, None, None)
    return counts


def _finished(
    conn: Connection,
    store: Store,
    name: str,
    started: datetime,
    clock: float,
    counts: dict[str, Any],
    error: str | None,
    code: str | None,
) -> None:
    """Record the run for `status`, log its one line, and tell observers (metrics, alerts)."""
    store.record_run(conn.name, name, started, counts, error, code)
    seconds = time.monotonic() - clock
    _log_run(conn.name, name, seconds, counts, code)
    publish(FlowFinished(conn.name, name, seconds, counts, error, code))


#: names a count may not take in a log record's ``extra`` (the record's own attributes)
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _log_run(
    connection: str, name: str, seconds: float, counts: dict[str, Any], code: str | None
) -> None:
    """The run's one line: INFO with its counts, or ERROR with the error's code."""
    extra: dict[str, Any] = {"connection": connection, "flow": name, "seconds": round(seconds, 3)}
    if code is not None:
        log.error("%s failed", name, extra={**extra, "code": code})
        return
    extra.update(
        (key if key not in _RESERVED else f"count_{key}", value)
        for key, value in counts.items()
        if isinstance(value, int | float)
    )
    log.info("%s done", name, extra=extra)


def run_cycle(
    conn: Connection,
    store: Store,
    stop: threading.Event | None = None,
    flows: Sequence[str] = tuple(FLOWS),
    between: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every flow once, in order; ``between(flow)`` runs after each (the demo's platform)."""
    report: dict[str, Any] = {}
    for name in flows:
        if stop and stop.is_set():
            break
        try:
            report[name] = run_flow(name, conn, store, stop)
        except ConnectionStopError as exc:
            report[name] = {"error": exc.safe_message}
            break
        except EhrBridgeError as exc:
            report[name] = {"error": exc.safe_message}
        if between is not None:
            between(name)
    return report


#: counts that say a cycle looked, not that it did anything
_QUIET = frozenset({"seen", "unchanged", "pages", "submissions", "already_stored"})


def did_something(report: dict[str, Any]) -> bool:
    """True if a cycle's report counts any work done (another cycle may find more)."""
    return any(
        isinstance(v, int) and v and k not in _QUIET
        for counts in report.values()
        for k, v in counts.items()
    )


def cycles_until_idle(
    conn: Connection,
    store: Store,
    stop: threading.Event | None = None,
    *,
    flows: Sequence[str] = tuple(FLOWS),
    most: int = 1,
) -> list[dict[str, Any]]:
    """Up to ``most`` cycles of one connection, until one does nothing or stop is set."""
    reports: list[dict[str, Any]] = []
    for _ in range(most):
        with correlation(cycle=new_cycle_id()):
            report = run_cycle(conn, store, stop, flows=flows)
        reports.append(report)
        if (stop is not None and stop.is_set()) or not did_something(report):
            break
    return reports


def side_by_side(
    connections: Sequence[Connection], work: Callable[[Connection], T]
) -> dict[str, T]:
    """``work(conn)`` for every connection at once, each in a thread of its own.

    One connection whose trust is slow or hangs never delays another's flows; each is
    bounded by its own deadlines. The calling thread only waits (in short steps, so a
    signal handler on the main thread runs at once).
    """
    if len(connections) == 1:
        return {connections[0].name: work(connections[0])}
    with ThreadPoolExecutor(len(connections), thread_name_prefix="connection") as pool:
        futures = {
            conn.name: pool.submit(contextvars.copy_context().run, work, conn)
            for conn in connections
        }
        pending = set(futures.values())
        while pending:
            _, pending = wait(pending, timeout=0.5)
    return {name: future.result() for name, future in futures.items()}
