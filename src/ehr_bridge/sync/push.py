"""Push: write due outbox rows into the trust record, exactly once in effect.

Rows are leased, so a crashed worker's rows come back after the lease. Any row that
has been tried before (its outcome may be unknown) first asks the trust whether it
already holds the item by our client reference, and only writes when it does not.
A failing row is rescheduled with backoff or dead-lettered; it never stops the others.
Every attempt's outcome goes into the write history, and every write that ends (written,
found already there, dead) into the audit log, with the outcome itself.

Up to the connection's ``push_concurrency`` writes are at the trust at once, because a
write spends nearly all its time waiting for the trust's answer. Only the HTTP calls run in
the worker threads; this thread claims, builds, closes and counts, so the store sees one
writer per push and the counts need no lock. A row is started only while its lease is
still well ahead of it, a dependant is claimed only once its care contact is finished,
and on stop (or a refused connection) the rows not started yet are handed back unattempted
while the ones at the trust are finished. A writer that is not known to be thread safe
(it does not set ``concurrent_writes``) is called one row at a time.

At the run's deadline (``flow_deadline_seconds``) push stops claiming, as on stop. A write
still at the trust then, or on stop once the grace has run out (``ehr_bridge.retry``), is
abandoned: a write that may have reached the trust goes back to pending with the attempt
counted, so the next attempt asks the trust before writing again; one that never left is
handed back unattempted. Neither is backed off or dead-lettered: it was our side that let
go, not the trust that refused.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ehr_bridge.adapters.base import WriteItem, WriteReceipt
from ehr_bridge.domain import codes
from ehr_bridge.errors import (
    AbandonedError,
    ConnectionStopError,
    EhrBridgeError,
    MappingError,
    TerminalError,
    TransientError,
)
from ehr_bridge.retry import current_scope
from ehr_bridge.store import OutboxRow, Store, utcnow
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.events import WriteFinished, publish

log = logging.getLogger(__name__)

#: a claimed row is started only while this share of its lease is still ahead
_LEASE_HEADROOM = 0.5
_BATCH = 20


@dataclass
class PushCounts:
    """What one push run did."""

    written: int = 0
    already_present: int = 0
    retried_later: int = 0
    dead: int = 0

    def add(self, outcome: str) -> None:
        """Count one finished attempt by its outcome (written, already_present, retry, dead)."""
        name = {"retry": "retried_later"}.get(outcome, outcome)
        setattr(self, name, getattr(self, name) + 1)


def push_concurrency(conn: Connection) -> int:
    """How many writes run at once: the connection's setting, if its writer is thread safe."""
    if not getattr(conn.writer, "concurrent_writes", False):
        return 1
    return max(1, conn.push_concurrency)


def push(
    conn: Connection,
    store: Store,
    stop: threading.Event | None = None,
    *,
    risk_only: bool = False,
) -> PushCounts:
    """Write every due row, claiming as slots free up, until none is due or left running.

    Risk rows are claimed first; ``risk_only`` (the risk lane) claims nothing else.
    """
    width = push_concurrency(conn)
    with _writers(width) as submit:
        run = _PushRun(conn, store, stop or threading.Event(), width, submit, risk_only)
        run.drain()
    return run.counts


@dataclass
class _Result:
    """What the trust said about one row: a receipt, or the error (and a late find)."""

    receipt: WriteReceipt | None = None
    error: EhrBridgeError | None = None
    #: after an ambiguous last attempt: the item found at the trust after all, if it was
    found_late: WriteReceipt | None = None


@dataclass
class _Started:
    row: OutboxRow
    clock: float


Submit = Callable[[Callable[[], _Result]], "Future[_Result]"]


@dataclass
class _PushRun:
    """One push: a queue of claimed rows, the ones at the trust, and the tally."""

    conn: Connection
    store: Store
    stop: threading.Event
    width: int
    submit: Submit
    risk_only: bool = False
    counts: PushCounts = field(default_factory=PushCounts)
    queue: deque[tuple[OutboxRow, float]] = field(default_factory=deque)
    running: dict[Future[_Result], _Started] = field(default_factory=dict)
    failure: BaseException | None = None
    out_of_time: bool = False

    def drain(self) -> None:
        """Start, collect and close rows until nothing is due; then raise what stopped it."""
        try:
            while not self._halted():
                self._fill()
                if not self.running:
                    break
                self._collect(FIRST_COMPLETED)
        finally:
            self._release_queue()
            self._collect(ALL_COMPLETED)
        if self.failure is not None:
            raise self.failure

    def _halted(self) -> bool:
        if self.stop.is_set() or self.failure is not None:
            return True
        if not current_scope().expired():
            return False
        if not self.out_of_time:
            self.out_of_time = True
            log.warning(
                "push reached its deadline: the rest waits for the next run",
                extra={"connection": self.conn.name},
            )
        return True

    def _fill(self) -> None:
        while len(self.running) < self.width and not self._halted():
            if not self.queue and not self._claim():
                return
            row, deadline = self.queue.popleft()
            if time.monotonic() < deadline:
                self._start(row)
            else:  # never tried, and its lease is running out: hand it back unattempted
                _release(self.store, [row], self.conn.owner)

    def _claim(self) -> bool:
        limit = max(_BATCH, 2 * self.width)
        rows = self.store.claim_due(
            self.conn.name,
            owner=self.conn.owner,
            lease_seconds=self.conn.lease_seconds,
            limit=limit,
            risk_only=self.risk_only,
        )
        deadline = time.monotonic() + self.conn.lease_seconds * _LEASE_HEADROOM
        self.queue.extend((row, deadline) for row in rows)
        return bool(rows)

    def _start(self, row: OutboxRow) -> None:
        clock = time.monotonic()
        try:
            item = build_write_item(self.conn, self.store, row)
        except (TransientError, TerminalError, MappingError) as exc:
            self._close(row, clock, _Result(error=exc))
            return
        call = contextvars.copy_context().run
        future = self.submit(lambda: call(_attempt, self.conn, row, item))
        self.running[future] = _Started(row, clock)

    def _collect(self, until: str) -> None:
        """Close the rows whose answer is in: at least one (FIRST_COMPLETED), or all."""
        if not self.running:
            return
        done, _ = wait(list(self.running), return_when=until)
        for future in done:
            started = self.running.pop(future)
            try:
                result = future.result()
            except ConnectionStopError as exc:
                _release(self.store, [started.row], self.conn.owner)
                self.failure = self.failure or exc
                continue
            except BaseException as exc:  # a bug: the row's lease lapses, its outcome unknown
                self.failure = self.failure or exc
                continue
            self._close(started.row, started.clock, result)

    def _close(self, row: OutboxRow, clock: float, result: _Result) -> None:
        outcome = _settle(self.conn, self.store, row, result)
        self.counts.add(outcome)
        publish(WriteFinished(self.conn.name, row.kind, outcome, time.monotonic() - clock))

    def _release_queue(self) -> None:
        _release(self.store, [row for row, _ in self.queue], self.conn.owner)
        self.queue.clear()


@contextmanager
def _writers(width: int) -> Iterator[Submit]:
    """Where the HTTP calls run: this thread for one at a time, else a bounded pool."""
    if width == 1:
        yield _run_here
        return
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="push") as pool:
        yield pool.submit


def _run_here(call: Callable[[], _Result]) -> Future[_Result]:
    future: Future[_Result] = Future()
    try:
        future.set_result(call())
    except BaseException as exc:
        future.set_exception(exc)
    return future


def _release(store: Store, rows: list[OutboxRow], owner: str) -> None:
    for row in rows:
        store.finish_attempt(
            row.id, state="pending", owner=owner, count_attempt=False, error=row.last_error
        )


def _attempt(conn: Connection, row: OutboxRow, item: WriteItem) -> _Result:
    """The trust's side of one row (runs in a worker): find or write, and a late find."""
    try:
        return _Result(receipt=_find_or_write(conn, row, item))
    except TransientError as exc:
        late = None
        abandoned = isinstance(exc, AbandonedError)
        if exc.ambiguous and not abandoned and conn.retry.exhausted(row.attempts + 1):
            late = _find_quietly(conn, item)
        return _Result(error=exc, found_late=late)
    except (TerminalError, MappingError) as exc:
        return _Result(error=exc)


def _find_or_write(conn: Connection, row: OutboxRow, item: WriteItem) -> WriteReceipt:
    if row.attempts > 0 and "find_by_reference" in conn.capabilities:
        found = conn.writer.find(item)
        if found is not None:
            return found
    return conn.writer.write(item)


def _find_quietly(conn: Connection, item: WriteItem) -> WriteReceipt | None:
    """Before burying an ambiguous last attempt, ask once more: it may have landed."""
    if "find_by_reference" not in conn.capabilities:
        return None
    try:
        return conn.writer.find(item)
    except EhrBridgeError:
        return None


def _settle(conn: Connection, store: Store, row: OutboxRow, result: _Result) -> str:
    """Close the row's attempt in the store as the trust's answer says; the outcome."""
    if result.receipt is not None:
        return _done(conn, store, row, result.receipt)
    if isinstance(result.error, AbandonedError):
        return _let_go(conn, store, row, result.error)
    if isinstance(result.error, TransientError):
        return _retry_or_bury(conn, store, row, result.error, result.found_late)
    assert result.error is not None  # a result holds a receipt or an error
    _bury(store, row, result.error, conn.owner)
    return "dead"


def _done(conn: Connection, store: Store, row: OutboxRow, receipt: WriteReceipt) -> str:
    outcome = "already_present" if receipt.already_present else "written"
    store.finish_attempt(
        row.id, state="done", owner=conn.owner, trust_id=receipt.trust_id, outcome=outcome
    )
    log.info(
        "written to trust",
        extra={
            "connection": conn.name,
            "outbox": row.id,
            "kind": row.kind,
            "referral": row.referral_id,
        },
    )
    return outcome


def build_write_item(conn: Connection, store: Store, row: OutboxRow) -> WriteItem:
    """Map a row's stored resource to the trust's payload (also used by tests and repair).

    ``context.patient`` (the trust's identifiers of the patient, and the name and birth
    date) is read from the store here, only for a kind whose mapping reads it, and lives
    only in this payload: the row's stored context never holds patient data.
    """
    with_patient = _reads_patient(conn, row.kind)
    inputs = store.write_inputs(row, with_patient=with_patient)
    if inputs.trust_referral_id is None or inputs.resource is None:
        raise TerminalError(f"outbox {row.id}: its referral or resource is missing", code="missing")
    if row.depends_on is not None and inputs.dependency_state not in (None, "done"):
        raise TerminalError(
            f"outbox {row.id}: the care contact it belongs to was not written"
            f" ({inputs.dependency_state})",
            code="dependency_failed",
        )
    context: dict[str, Any] = json.loads(row.context)
    context.update(client_reference=row.id, trust_referral_id=inputs.trust_referral_id)
    context["care_contact_id"] = inputs.dependency_trust_id if row.depends_on else None
    if with_patient:
        context["patient"] = patient_context(inputs.patient, row.connection)
    payload = conn.mapping.outbound(row.kind, inputs.resource, context)
    return WriteItem(row.kind, inputs.trust_referral_id, row.id, payload)


def _reads_patient(conn: Connection, kind: str) -> bool:
    """True when an outbound rule of ``kind`` reads ``context.patient``."""
    if kind not in conn.mapping.outbound_kinds():
        return False
    return any("context.patient" in rule.source for rule in conn.mapping.rules(kind))


def patient_context(patient: dict[str, Any] | None, connection: str) -> dict[str, Any]:
    """``context.patient`` for the outbound mappings, from the referral's FHIR Patient.

    ``local_id`` is the identifier this connection's trust issued (a patient known to two
    trusts carries one per trust); ``nhs_number`` the UK Core ``nhsNumber`` slice; the name
    is the official one (else the first). Absent parts are None, so a mapping's rule for a
    field the trust never gave us yields nothing rather than failing.
    """
    if patient is None:
        return {}
    local_system = codes.patient_identifier_system(connection)
    names = patient.get("name") or [{}]
    name = next((n for n in names if n.get("use") == "official"), names[0])
    return {
        "nhs_number": _identifier(patient, codes.NHS_NUMBER_SYSTEM),
        "local_id": _identifier(patient, local_system),
        "family_name": name.get("family"),
        "given_names": list(name.get("given") or []) or None,
        "birth_date": patient.get("birthDate"),
    }


def _identifier(patient: dict[str, Any], system: str) -> str | None:
    found = (i.get("value") for i in patient.get("identifier") or [] if i.get("system") == system)
    return next(found, None)


def _retry_or_bury(
    conn: Connection,
    store: Store,
    row: OutboxRow,
    exc: TransientError,
    found_late: WriteReceipt | None,
) -> str:
    attempts = row.attempts + 1
    if conn.retry.exhausted(attempts):
        if exc.ambiguous and found_late is not None:
            store.finish_attempt(
                row.id,
                state="done",
                owner=conn.owner,
                trust_id=found_late.trust_id,
                outcome="already_present",
            )
            return "already_present"
        _bury(store, row, exc, conn.owner)
        return "dead"
    delay = conn.retry.delay(attempts, exc.retry_after)
    store.finish_attempt(
        row.id,
        state="pending",
        owner=conn.owner,
        error=exc.safe_message,
        error_code=exc.code,
        next_attempt_at=utcnow() + timedelta(seconds=delay),
    )
    log.warning(
        "write failed, will retry",
        extra={
            "connection": conn.name,
            "outbox": row.id,
            "attempt": attempts,
            "delay_s": round(delay, 1),
        },
    )
    return "retry"


def _let_go(conn: Connection, store: Store, row: OutboxRow, exc: AbandonedError) -> str:
    """A write we gave up on (stop, deadline): due again at once, never buried.

    If it may have reached the trust the attempt counts, so the next one reads first.
    """
    store.finish_attempt(
        row.id,
        state="pending",
        owner=conn.owner,
        error=exc.safe_message if exc.ambiguous else row.last_error,
        error_code=exc.code if exc.ambiguous else row.last_error_code,
        count_attempt=exc.ambiguous,
    )
    log.warning(
        "write abandoned, due again next run",
        extra={"connection": conn.name, "outbox": row.id, "code": exc.code},
    )
    return "retry"


def _bury(store: Store, row: OutboxRow, exc: EhrBridgeError, owner: str) -> None:
    store.finish_attempt(
        row.id, state="dead", owner=owner, error=exc.safe_message, error_code=exc.code
    )
    log.error("write dead-lettered", extra={"outbox": row.id, "kind": row.kind, "code": exc.code})
