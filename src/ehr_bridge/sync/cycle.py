"""One cycle: the flows in order for one connection, each recorded for `status`.

A flow that fails is recorded with its PHI-free message and the next flow still runs,
except after ConnectionStopError (credentials refused, endpoint gone), which ends the
connection's cycle. Unknown exceptions are recorded by type only: their text might
carry data we did not write.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ehr_bridge.errors import ConnectionStopError, EhrBridgeError
from ehr_bridge.store import Store, utcnow
from ehr_bridge.sync.collect import collect
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.deliver import deliver
from ehr_bridge.sync.events import FlowFinished, publish
from ehr_bridge.sync.pull import pull
from ehr_bridge.sync.push import push

log = logging.getLogger(__name__)

Flow = Callable[[Connection, Store, threading.Event | None], Any]
FLOWS: dict[str, Flow] = {"pull": pull, "deliver": deliver, "collect": collect, "push": push}


#: flows that walk one cursor or folder: one worker at a time per connection
LEASED_FLOWS = frozenset({"pull", "deliver", "collect"})


def run_flow(
    name: str, conn: Connection, store: Store, stop: threading.Event | None = None
) -> dict[str, Any]:
    """Run one flow under the connection's lock (and flow lease) and record the run."""
    if name in LEASED_FLOWS and not store.take_flow_lease(
        conn.name, name, conn.owner, conn.lease_seconds
    ):
        return {"skipped": 1}  # another worker is running it; push is shared row by row
    if name not in LEASED_FLOWS:
        return _run_recorded(name, conn, store, stop)
    with _lease_kept(name, conn, store):
        return _run_recorded(name, conn, store, stop)


@contextmanager
def _lease_kept(name: str, conn: Connection, store: Store) -> Iterator[None]:
    """Renew the flow lease while the flow runs, then give it up.

    A backfill or a large collect outlives one lease; without renewal a second daemon
    would take the flow over half-way (no harm to the data, as every write is keyed, but
    double the work). A failed renewal is logged and the flow goes on.
    """
    done = threading.Event()

    def renew() -> None:
        while not done.wait(conn.lease_seconds / 3):
            try:
                if not store.take_flow_lease(conn.name, name, conn.owner, conn.lease_seconds):
                    log.warning("flow lease lost", extra={"connection": conn.name, "flow": name})
            except Exception as exc:  # the flow reports database trouble itself
                log.warning(
                    "flow lease renewal failed (%s)",
                    type(exc).__name__,
                    extra={"connection": conn.name, "flow": name},
                )

    keeper = threading.Thread(target=renew, name=f"lease-{conn.name}-{name}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join()
        store.release_flow_lease(conn.name, name, conn.owner)


def _run_recorded(
    name: str, conn: Connection, store: Store, stop: threading.Event | None
) -> dict[str, Any]:
    started, clock = utcnow(), time.monotonic()
    with conn.lock:
        try:
            counts = dataclasses.asdict(FLOWS[name](conn, store, stop))
        except EhrBridgeError as exc:
            _finished(conn, store, name, started, clock, {}, exc.safe_message, exc.code)
            log.error("%s failed", name, extra={"connection": conn.name, "code": exc.code})
            raise
        except Exception as exc:
            message = f"internal error ({type(exc).__name__})"
            _finished(conn, store, name, started, clock, {}, message, "internal_error")
            log.error(
                "%s failed with %s", name, type(exc).__name__, extra={"connection": conn.name}
            )
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
    """Record the run for `status` and tell observers (metrics, alerts)."""
    store.record_run(conn.name, name, started, counts, error)
    seconds = time.monotonic() - clock
    publish(FlowFinished(conn.name, name, seconds, counts, error, code))


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
