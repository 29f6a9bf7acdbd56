"""Pull: page through the trust's changed referrals, map, validate, store with the cursor.

Each page's referrals, its quarantine entries and the advanced cursor commit in one
transaction. The cursor is a closed start (``updated_at >= cursor``), so the last
record of a page is seen again next time and skipped by its unchanged hash: nothing
between pages can be lost, and nothing is stored twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from ehr_bridge.adapters.base import TrustReader
from ehr_bridge.errors import ConfigError, TerminalError
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.pull_page import PageWork, PullCounts

__all__ = ["PageHook", "PullCounts", "pull", "pull_one"]

log = logging.getLogger(__name__)


PageHook = Callable[[PullCounts], None]


def pull(
    conn: Connection,
    store: Store,
    stop: threading.Event | None = None,
    *,
    cursor_name: str | None = None,
    since: datetime | None = None,
    on_page: PageHook | None = None,
) -> PullCounts:
    """Pull every referral changed since the cursor, one committed page at a time.

    ``cursor_name`` (default: the connection's name) lets a backfill keep its own cursor
    and so resume where it stopped; ``since`` is where a cursor that does not exist yet
    starts; ``on_page`` is told the running counts after each committed page.
    """
    counts = PullCounts()
    key = cursor_name or conn.name
    cursor = store.get_cursor(key)
    if cursor is None and since is not None:
        cursor = _later(None, since)
    since_start = _parse_instant(cursor)  # one query for the whole run; its pages follow
    page_token: str | None = None
    followed: set[str] = set()
    while not (stop and stop.is_set()):
        page = conn.source.fetch_referrals(updated_since=since_start, page=page_token)
        counts.pages += 1
        work = PageWork(conn, store, counts)
        work.take(page.records)
        for record in page.records:
            stamp = conn.mapping.record_updated_at(record) if isinstance(record, dict) else None
            cursor = _later(cursor, stamp)
        referrals, quarantines = work.referrals, work.quarantines
        changes = store.save_pull_page(
            conn.name,
            referrals,
            quarantines,
            cursor,
            cursor_name=key,
            restamps=work.restamps,
            audits=work.audits,
        )
        _log_identity(conn, changes, counts)
        log.debug(
            "pull page committed",
            extra={
                "connection": conn.name,
                "records": len(page.records),
                "page": counts.pages,
                "skipped_not_ours": counts.skipped_not_ours,
            },
        )
        if on_page is not None:
            on_page(counts)
        if not page.next_page:
            break
        page_token = _next_page(conn, page.next_page, followed, counts.pages)
    return counts


def _next_page(conn: Connection, token: str, followed: set[str], pages: int) -> str:
    """The next page's token, unless the trust's paging runs round in a circle or for ever.

    A token seen before in this run would fetch pages already stored, again and again;
    endless fresh tokens would keep one run going for ever. Either stops the run with an
    error naming it (the pages before are committed, so nothing is lost).

    Raises:
        TerminalError: ``page_cycle`` or ``page_limit``.
    """
    if token in followed:
        raise TerminalError(
            f"the trust's next-page token came round again after {pages} pages"
            " (its paging runs in a circle): pull stopped, the pages before are stored",
            code="page_cycle",
        )
    if pages >= conn.max_pull_pages:
        raise TerminalError(
            f"pull stopped after {pages} pages ([connection.schedule] max_pull_pages):"
            " the next run goes on from the cursor",
            code="page_limit",
        )
    followed.add(token)
    return token


def pull_one(conn: Connection, store: Store, trust_referral_id: str) -> PullCounts:
    """Pull one referral now, whatever the cursor says (`quarantine retry` after a fix).

    The record goes through the same mapping, checks and hash skip as in ``pull``; the
    cursor does not move. ``seen`` is 0 when the trust no longer has the referral.

    Raises:
        ConfigError: the trust adapter cannot fetch one referral (no ``fetch_referral``).
    """
    source = conn.source
    if "fetch_referral" not in conn.capabilities or not isinstance(source, TrustReader):
        raise ConfigError(
            "this connection's trust adapter cannot fetch one referral (fetch_referral);"
            " wait for the next pull instead",
            key=f"connection {conn.name}",
        )
    counts = PullCounts(pages=1)
    record = source.fetch_referral(trust_referral_id)
    if record is None:
        return counts
    work = PageWork(conn, store, counts)
    work.take([record])
    changes = store.save_pull_page(
        conn.name,
        work.referrals,
        work.quarantines,
        None,
        restamps=work.restamps,
        audits=work.audits,
    )
    _log_identity(conn, changes, counts)
    return counts


def _log_identity(conn: Connection, changes: list[tuple[str, str]], counts: PullCounts) -> None:
    """Count and log (kind and our referral id only) the identity changes a page brought."""
    counts.identity_changes += len(changes)
    for referral_id, kind in changes:
        log.info(
            "patient identity changed at the trust",
            extra={"connection": conn.name, "referral": referral_id, "kind": kind},
        )


def _parse_instant(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _later(cursor: str | None, candidate: datetime | None) -> str | None:
    """The later of the cursor and a record's timestamp, as ISO UTC text."""
    if candidate is None:
        return cursor
    current = _parse_instant(cursor)
    candidate = candidate if candidate.tzinfo else candidate.replace(tzinfo=UTC)
    if current is None or candidate > current:
        return candidate.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return cursor
