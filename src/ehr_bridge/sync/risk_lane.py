"""The risk lane: risks collected, written and checked for acknowledgement on their own.

A risk must reach the trust's duty team within minutes, whatever the routine flows are
doing. The daemon runs this flow every ``[connection.schedule] risk_seconds`` (15 s) in an
executor of its own, without the connection's flow lock: a push working through a
backlog of thousands of care contacts never delays it. It

1. collects, unless a collect of this connection is running already (that one queues
   the risks it finds, and this lane writes them on its next tick);
2. writes the due risk rows, and only those, through a trust adapter instance of its own
   (``Connection.risk_writer``), so it never waits for a routine write's connection;
3. asks the trust, where the adapter can tell (``RiskAcknowledger``), whether someone has
   acknowledged each risk item written, and records who and when.

Escalation (paging when a risk is not acknowledged in time, or cannot be written) is the
alert service's (``observability.alerts``): it runs whether or not this flow does.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass

from ehr_bridge.adapters.base import RiskAcknowledger
from ehr_bridge.errors import ConnectionStopError, EhrBridgeError
from ehr_bridge.retry import current_scope
from ehr_bridge.store import Store
from ehr_bridge.sync.collect import collect_if_free
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.push import build_write_item, push

log = logging.getLogger(__name__)

#: most acknowledgements asked for per run, oldest risk first
ACK_CHECKS_PER_RUN = 50


@dataclass
class RiskLaneCounts:
    """What one run of the risk lane did."""

    collected: int = 0
    risks: int = 0
    #: write-backs its collect queued (routine ones too: the daemon brings push forward)
    queued: int = 0
    written: int = 0
    retried_later: int = 0
    dead: int = 0
    acknowledged: int = 0


def risk_lane(
    conn: Connection, store: Store, stop: threading.Event | None = None
) -> RiskLaneCounts:
    """Collect (if free), write the due risks, then read acknowledgements back."""
    counts = RiskLaneCounts()
    collected = collect_if_free(conn, store, stop)
    counts.collected, counts.risks = collected.stored, collected.risks
    counts.queued = collected.queued
    lane = lane_connection(conn)
    pushed = push(lane, store, stop, risk_only=True)
    counts.written = pushed.written + pushed.already_present
    counts.retried_later, counts.dead = pushed.retried_later, pushed.dead
    counts.acknowledged = _read_acknowledgements(lane, store, stop)
    return counts


def lane_connection(conn: Connection) -> Connection:
    """The connection as the risk lane uses it: the same, with the lane's own writer."""
    if conn.risk_writer is None:
        return conn
    return dataclasses.replace(conn, writer=conn.risk_writer)


def _read_acknowledgements(conn: Connection, store: Store, stop: threading.Event | None) -> int:
    writer = conn.writer
    if "read_acknowledgement" not in conn.capabilities or not isinstance(writer, RiskAcknowledger):
        return 0
    waiting = [
        view
        for view in store.risks(conn.name, open_only=True)
        if view.outbox_state == "done" and view.trust_id and view.outbox_key
    ][:ACK_CHECKS_PER_RUN]
    found = 0
    for view in waiting:
        if (stop is not None and stop.is_set()) or current_scope().expired():
            break
        row = store.outbox_row(view.outbox_key or "")
        if row is None or view.trust_id is None:
            continue
        try:
            answer = writer.acknowledgement(build_write_item(conn, store, row), view.trust_id)
        except ConnectionStopError:
            raise
        except EhrBridgeError as exc:  # asked again on the next run
            log.warning(
                "risk acknowledgement not read",
                extra={"connection": conn.name, "risk": view.id, "code": exc.code},
            )
            continue
        if answer is not None and store.record_acknowledgement(view.id, answer.at, answer.by):
            found += 1
            log.info(
                "risk acknowledged at the trust", extra={"connection": conn.name, "risk": view.id}
            )
    return found
