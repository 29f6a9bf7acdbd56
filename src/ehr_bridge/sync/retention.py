"""Retention of the files adapters keep, and the daemon's purge on a schedule.

``security.retention.purge`` empties payloads in the database; the adapters still hold
files: the folder provider's ``sessions/processed`` (session bundles, note text included)
and ``sessions/rejected`` (unreadable submissions), the HL7 v2 adapter's ``received``
(referrals as the trust sent them). The store keeps what matters of them, encrypted, so a
file may go ``retention_days`` after it was set aside, on these conditions:

- a trust's file only once pull has gone past it (stamped before the connection's cursor:
  the file at the cursor is read again by the next pull);
- a file that is the only copy of what a quarantine entry refers to (a rejected
  submission) only once that entry's own raw record would go (closed ``retention_days``
  ago), so support staff never lose what an open entry points at.

Only names and counts come out of here; a file's content is never read.

``purge_retained`` is the whole purge (payloads, then files) that ``ehr-bridge retention
purge`` runs; ``RetentionJob`` is the daemon's job that runs it every
``[security] retention_interval_hours``, one daemon at a time.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ehr_bridge.adapters.base import KeepsFiles
from ehr_bridge.config import SecurityConfig
from ehr_bridge.errors import ConfigError, EhrBridgeError
from ehr_bridge.retry import current_scope, flow_scope
from ehr_bridge.security.retention import PurgeCounts, purge
from ehr_bridge.store import Store, utcnow
from ehr_bridge.sync.connection import Connection, worker_id
from ehr_bridge.sync.cycle import lease_kept

log = logging.getLogger(__name__)


def purge_kept_files(
    connections: Iterable[Connection],
    store: Store,
    retention_days: int,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
) -> Counter[str]:
    """Delete (or, on a dry run, count) the kept files past retention; counts per folder."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    counts: Counter[str] = Counter()
    for conn in connections:
        if current_scope().stopping():
            break
        held = store.held_quarantine_refs(conn.name, "submission", cutoff)
        for keeper, before in _keepers(conn, store, cutoff):
            for kept in list(keeper.kept_files(before)):
                if kept.quarantine_ref is not None and kept.quarantine_ref in held:
                    continue
                if dry_run or keeper.remove_kept(kept):
                    counts[kept.folder] += 1
    return counts


def _keepers(
    conn: Connection, store: Store, cutoff: datetime
) -> Iterator[tuple[KeepsFiles, datetime]]:
    """Each adapter of the connection that keeps files, with the time its files must predate."""
    if isinstance(conn.provider, KeepsFiles):
        yield conn.provider, cutoff
    source = conn.source
    if isinstance(source, KeepsFiles):
        cursor = _instant(store.get_cursor(conn.name))
        if cursor is not None:  # never pulled: every file is still to be read
            yield source, min(cutoff, cursor)


def _instant(cursor: str | None) -> datetime | None:
    """A cursor that is an ISO instant (as pull stores one), else None (keep everything)."""
    if not cursor:
        return None
    try:
        parsed = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- the whole purge, and the daemon's job that runs it ----------------------------------

#: the "connection" of store-wide work in the run and flow lease tables; no connection can
#: be named so (names are lower case letters, digits and dashes)
STORE_WIDE = "*"
RETENTION_FLOW = "retention"
#: the retention lease, renewed every third of it while a purge runs
RETENTION_LEASE_SECONDS = 300.0


def purge_retained(
    connections: Iterable[Connection],
    store: Store,
    security: SecurityConfig,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
) -> tuple[PurgeCounts, Counter[str]]:
    """The whole purge, as `retention purge` and the daemon run it: payloads, then files.

    Raises:
        ConfigError: ``security.retention_days`` is not set.
        OSError: a kept file could not be deleted.
    """
    payloads = purge(store, security, now=now, dry_run=dry_run)
    days = security.retention_days or 0  # set: purge checked it
    return payloads, purge_kept_files(connections, store, days, now=now, dry_run=dry_run)


def retention_counts(payloads: PurgeCounts, files: Counter[str]) -> dict[str, Any]:
    """One purge's counts as recorded for `ehr-bridge retention status` and printed."""
    return {
        "referrals": payloads.referrals,
        "resources": payloads.resources,
        "patients": payloads.patients,
        "quarantine": payloads.quarantine,
        "files": dict(sorted(files.items())),
        "dry_run": payloads.dry_run,
    }


class RetentionJob:
    """The daemon's purge, every ``[security] retention_interval_hours``, one daemon at once.

    The scheduler runs it in a thread of its own, never a connection's, and the purge
    writes a batch of referrals per transaction, so no flow waits for it long. It holds a
    flow lease of its own (``STORE_WIDE``, ``retention``): of several daemons on one
    database one purges at a time, and each first reads the last recorded purge, so
    between them they purge once per interval, not once each. Every purge is recorded in
    the run table like a flow run (``ehr-bridge retention status``).
    """

    def __init__(
        self,
        connections: Sequence[Connection],
        store: Store,
        security: SecurityConfig,
        *,
        owner: str | None = None,
        lease_seconds: float = RETENTION_LEASE_SECONDS,
    ) -> None:
        """Purge for ``connections`` (their kept files) and the whole store (payloads)."""
        if security.retention_days is None:
            raise ConfigError("set retention_days to purge payloads", key="security.retention_days")
        self.connections = list(connections)
        self.store = store
        self.security = security
        self.owner = owner or worker_id()
        self.lease_seconds = lease_seconds
        self.interval = timedelta(hours=security.retention_interval_hours)

    def first_run(self) -> datetime:
        """When the first purge is due: an interval after the last one recorded, or now.

        So a daemon restarted more often than the interval still purges on time.
        """
        now = utcnow()
        try:
            last = self._last_finished()
        except SQLAlchemyError:  # the first run finds out; it is skipped if purged lately
            return now
        return now if last is None else max(now, last + self.interval)

    def run(self, stop: threading.Event) -> dict[str, Any] | None:
        """Purge if due and the lease is free; the counts, ``{"skipped": 1}``, or None (failed)."""
        if stop.is_set():
            return None
        lease = (STORE_WIDE, RETENTION_FLOW, self.owner, self.lease_seconds)
        if not self.store.take_flow_lease(*lease):
            return {"skipped": 1}  # another daemon is purging
        with lease_kept(self.store, *lease):
            last = self._last_finished()
            if last is not None and utcnow() - last < self.interval / 2:
                return {"skipped": 1}  # another daemon purged within this interval
            return self._recorded(stop)

    def _recorded(self, stop: threading.Event) -> dict[str, Any] | None:
        started = utcnow()
        error: str | None = None
        counts: dict[str, Any] = {}
        with flow_scope(RETENTION_FLOW, None, stop):
            try:
                counts = retention_counts(
                    *purge_retained(self.connections, self.store, self.security)
                )
            except EhrBridgeError as exc:
                error = exc.safe_message
            except OSError as exc:
                error = f"cannot delete a kept file ({type(exc).__name__})"
            except Exception as exc:  # recorded by type only: its text might carry data
                error = f"internal error ({type(exc).__name__})"
        self.store.record_run(STORE_WIDE, RETENTION_FLOW, started, counts, error)
        if error is not None:
            log.error("retention purge failed: %s", error)
            return None
        files = sum(counts["files"].values())
        done = {"referrals": counts["referrals"], "resources": counts["resources"]}
        log.info("retention purge done", extra={**done, "files": files})
        return counts

    def _last_finished(self) -> datetime | None:
        row = self.store.last_runs(STORE_WIDE).get(RETENTION_FLOW)
        if row is None:
            return None
        finished = row.finished_at
        return finished if finished.tzinfo else finished.replace(tzinfo=UTC)
