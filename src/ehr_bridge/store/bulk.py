"""Set-based writes for the hot paths (pull pages, collected bundles), on both backends.

The ORM's unit of work costs about a millisecond per row it tracks; a pull page of 500
referrals touches a few thousand rows. These helpers write many rows with one
``INSERT ... ON CONFLICT`` statement executed for the whole batch, inside the caller's
transaction, so a page still commits or rolls back as one. SQLite (3.24+) and PostgreSQL
both speak ``ON CONFLICT``; SQLAlchemy builds the dialect's form.

PostgreSQL refuses one statement that updates the same row twice, so every batch is
de-duplicated by key first, the last occurrence winning (as sequential upserts would).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, update
from sqlmodel import Session

from ehr_bridge.security.crypto import PayloadCipher, resource_aad
from ehr_bridge.store.models import QuarantineRow, ResourceRow

JsonDict = dict[str, Any]
Row = dict[str, Any]

RESOURCE_TABLE: Table = ResourceRow.__table__  # type: ignore[attr-defined]
_QUARANTINE: Table = QuarantineRow.__table__  # type: ignore[attr-defined]
#: values per IN (...) list: well inside every backend's parameter limit
CHUNK = 500


def canonical_json(value: Any) -> str:
    """Stable JSON text (sorted keys, no spaces) for storage and hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def text_hash(text: str) -> str:
    """SHA-256 of canonical JSON text already made (``content_hash`` without redoing it)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_hash(value: Any) -> str:
    """SHA-256 of the canonical JSON, to tell changed records from unchanged ones."""
    return text_hash(canonical_json(value))


def chunks(values: Sequence[str]) -> Iterator[list[str]]:
    """``values`` without repeats, in lists of at most ``CHUNK`` (for IN lists)."""
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), CHUNK):
        yield unique[start : start + CHUNK]


def _insert(s: Session, table: Table) -> Any:
    """The dialect's INSERT (with ON CONFLICT); a dialect is imported once a store uses it."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    raise NotImplementedError(f"no bulk upsert for the {dialect} dialect")


def last_by_key(rows: Iterable[Row], keys: Sequence[str]) -> list[Row]:
    """One row per key, the last occurrence winning, in first-seen order of the keys."""
    latest: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        latest[tuple(row[k] for k in keys)] = row
    return list(latest.values())


def upsert(
    s: Session,
    table: Table,
    rows: Sequence[Row],
    *,
    keys: Sequence[str],
    update: Sequence[str],
    keep_when_null: Sequence[str] = (),
) -> None:
    """Insert ``rows``; where a key exists, overwrite the ``update`` columns.

    ``keep_when_null`` columns are overwritten only by a non-null new value (a resource
    stored again without its referral keeps the referral it had).
    """
    unique = last_by_key(rows, keys)
    if not unique:
        return
    statement = _insert(s, table)
    new = statement.excluded
    values: dict[str, Any] = {name: new[name] for name in update}
    for name in keep_when_null:
        values[name] = func.coalesce(new[name], table.c[name])
    s.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=values), unique)


def insert_new(s: Session, table: Table, rows: Sequence[Row], *, keys: Sequence[str]) -> None:
    """Insert the rows whose key is not there yet; existing rows are left as they are."""
    unique = last_by_key(rows, keys)
    if unique:
        s.execute(_insert(s, table).on_conflict_do_nothing(index_elements=list(keys)), unique)


def insert_all(s: Session, table: Table, rows: Sequence[Row]) -> None:
    """Append rows to a history table (no key conflicts possible)."""
    if rows:
        s.execute(table.insert(), list(rows))


def resource_row(
    cipher: PayloadCipher,
    connection: str,
    referral_id: str | None,
    resource: JsonDict,
    body_json: str,
    body_hash: str,
    now: datetime,
) -> Row:
    """The ``resource`` table row for one FHIR resource, its body sealed by ``cipher``.

    ``body_json`` and ``body_hash`` are the canonical JSON and its hash, which the caller
    usually has already (for the referral's FHIR hash).
    """
    kind, rid = resource["resourceType"], resource["id"]
    body, key_id = cipher.seal(body_json, resource_aad(kind, rid))
    return {
        "resource_type": kind,
        "id": rid,
        "connection": connection,
        "referral_id": referral_id,
        "body": body,
        "content_hash": body_hash,
        "key_id": key_id,
        "purged_at": None,
        "updated_at": now,
    }


def upsert_resources(s: Session, rows: Sequence[Row]) -> None:
    """Store resources by (type, id): a newer body replaces the old, a purge is undone."""
    upsert(
        s,
        RESOURCE_TABLE,
        rows,
        keys=("resource_type", "id"),
        update=("body", "content_hash", "key_id", "purged_at", "updated_at"),
        keep_when_null=("referral_id",),
    )


def close_open_quarantine(
    s: Session, connection: str, record_refs: Iterable[str], state: str, now: datetime
) -> None:
    """Close every open entry of these records (one UPDATE per chunk of refs)."""
    for chunk in chunks(list(record_refs)):
        s.execute(
            update(_QUARANTINE)
            .where(
                _QUARANTINE.c.connection == connection,
                _QUARANTINE.c.state == "open",
                _QUARANTINE.c.record_ref.in_(chunk),
            )
            .values(state=state, closed_at=now)
        )
