"""Retention of the files adapters keep: plain-text copies of what the store holds.

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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from ehr_bridge.adapters.base import KeepsFiles
from ehr_bridge.store import Store, utcnow
from ehr_bridge.sync.connection import Connection


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
