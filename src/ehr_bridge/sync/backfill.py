"""Backfill: pull a trust's history since a date, page by page, resumable, beside the daemon.

A backfill is the pull flow on its own cursor (``<connection>#backfill``): each page's
referrals commit with that cursor in one transaction, so memory stays one page deep and
an interrupted backfill (Ctrl-C, SIGKILL, a reboot) resumes from its last committed page.
Records it stores are ordinary referrals: the daemon's deliver and push take them from
there, and a record the daemon's own pull already holds is skipped by its hash.

The daemon may pull the same recent records at the same moment; if both insert one new
referral together, one page loses the race (a unique-key error), rolls back whole, and
the backfill simply resumes from its cursor and finds the record already stored. A flow
lease (``backfill``) keeps two backfills of one connection from running at once; one left
by a backfill killed outright on this host is freed when the next one starts.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError

from ehr_bridge.errors import TransientError
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection, process_alive
from ehr_bridge.sync.pull import PullCounts, pull

log = logging.getLogger(__name__)

LEASE_FLOW = "backfill"
#: consecutive lost insert races tolerated before the backfill gives up (and can be re-run)
MAX_COLLISIONS = 5


def backfill_cursor_name(connection: str) -> str:
    """The cursor a connection's backfill keeps, apart from the daemon's pull cursor."""
    return f"{connection}#backfill"


@dataclass(frozen=True)
class BackfillProgress:
    """Where a running backfill is: counts so far and how far its cursor has moved."""

    counts: PullCounts
    since: datetime
    until: datetime
    cursor: datetime | None
    seconds: float

    @property
    def fraction(self) -> float:
        """Share of the time span covered so far (0..1), the basis of the ETA."""
        if self.cursor is None:
            return 0.0
        span = (self.until - self.since).total_seconds()
        if span <= 0:
            return 1.0
        return min(max((self.cursor - self.since).total_seconds() / span, 0.0), 1.0)

    @property
    def rate(self) -> float:
        """Records seen per second so far."""
        return self.counts.seen / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class BackfillResult:
    """What a backfill run did; ``resumed_from`` is the cursor it found, if any."""

    counts: PullCounts
    seconds: float
    resumed_from: str | None
    cursor: str | None
    complete: bool


ProgressHook = Callable[[BackfillProgress], None]


@dataclass
class _Run:
    """One backfill run's running totals across resumed pulls."""

    conn: Connection
    store: Store
    since: datetime
    until: datetime
    started: float
    clock: Callable[[], float]
    on_progress: ProgressHook | None
    done: PullCounts = dataclasses.field(default_factory=PullCounts)
    #: the running pull's counts as of its last committed page
    committed: PullCounts = dataclasses.field(default_factory=PullCounts)

    def page(self, counts: PullCounts) -> None:
        """After each committed page: keep the lease and report progress."""
        self.committed = dataclasses.replace(counts)
        self.conn_lease()
        if self.on_progress is None:
            return
        cursor = _instant(self.store.get_cursor(backfill_cursor_name(self.conn.name)))
        total = _sum(self.done, counts)
        seconds = self.clock() - self.started
        self.on_progress(BackfillProgress(total, self.since, self.until, cursor, seconds))

    def conn_lease(self) -> None:
        """Take or renew the backfill lease; someone else holding it stops this run."""
        conn = self.conn
        if not self.store.take_flow_lease(conn.name, LEASE_FLOW, conn.owner, conn.lease_seconds):
            raise TransientError(f"connection {conn.name}: another backfill is running")


def backfill(
    conn: Connection,
    store: Store,
    since: datetime,
    *,
    stop: threading.Event | None = None,
    on_progress: ProgressHook | None = None,
    restart: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> BackfillResult:
    """Pull every referral changed since ``since`` (or since where the last run stopped).

    ``restart`` forgets a previous run's cursor and starts again at ``since``. Returns when
    the trust's listing is exhausted, or when ``stop`` is set (after the page in hand).

    Raises:
        TransientError: another backfill of this connection holds the lease.
    """
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    key = backfill_cursor_name(conn.name)
    run = _Run(conn, store, since, datetime.now(UTC), clock(), clock, on_progress)
    # a backfill killed outright on this host must not block the next one for a lease's life
    store.expire_orphaned_flow_leases(socket.gethostname(), process_alive)
    run.conn_lease()
    try:
        if restart:
            store.save_pull_page(conn.name, [], [], _iso(since), cursor_name=key)
        resumed_from = None if restart else store.get_cursor(key)
        log.info("backfill started", extra={"connection": conn.name, "resumed": bool(resumed_from)})
        _pull_all(run, key, stop)
    finally:
        store.release_flow_lease(conn.name, LEASE_FLOW, conn.owner)
    complete = not (stop and stop.is_set())
    log.info("backfill finished", extra={"connection": conn.name, "complete": complete})
    return BackfillResult(
        run.done, clock() - run.started, resumed_from, store.get_cursor(key), complete
    )


def _pull_all(run: _Run, key: str, stop: threading.Event | None) -> None:
    collisions = 0
    while True:
        try:
            counts = pull(
                run.conn, run.store, stop, cursor_name=key, since=run.since, on_page=run.page
            )
        except IntegrityError:
            run.done, run.committed = _sum(run.done, run.committed), PullCounts()
            collisions += 1
            if collisions > MAX_COLLISIONS:
                raise
            log.info("backfill page lost an insert race; resuming", extra={"attempt": collisions})
            continue
        run.done = _sum(run.done, counts)
        return


def _sum(a: PullCounts, b: PullCounts) -> PullCounts:
    return PullCounts(
        **{f.name: getattr(a, f.name) + getattr(b, f.name) for f in dataclasses.fields(a)}
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
