"""``ehr-bridge keys rotate`` and ``keys status``: which key seals which rows, and re-sealing.

Rotation re-encrypts, in batches of one transaction each, every payload that is not on the
keyring's active key, plain rows written before a key was configured included. Rows are
locked while they are re-sealed (``FOR UPDATE`` on PostgreSQL; SQLite refuses a batch that
a daemon wrote to meanwhile, and the batch is simply read again), so a running daemon
never loses a newer version to an older one. It can be stopped and run again at any time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from ehr_bridge.errors import ConfigError
from ehr_bridge.security.crypto import PayloadCipher, quarantine_aad, resource_aad
from ehr_bridge.store import QuarantineRow, ResourceRow, Store

PLAIN = "plain"
PURGED = "purged"
TABLES: dict[str, Any] = {"resource": ResourceRow, "quarantine": QuarantineRow}


@dataclass
class RotateCounts:
    """Rows re-sealed with the active key, per table."""

    active_key: str
    resealed: Counter[str] = field(default_factory=Counter)


def key_usage(store: Store) -> dict[str, dict[str, int]]:
    """Rows per key id (``plain`` for unencrypted, ``purged`` for emptied), per table."""
    usage: dict[str, dict[str, int]] = {}
    with store.session() as s:
        for name, model in TABLES.items():
            rows = s.exec(
                select(model.key_id, col(model.purged_at).is_not(None), func.count()).group_by(
                    model.key_id, col(model.purged_at).is_not(None)
                )
            ).all()
            counts: Counter[str] = Counter()
            for key_id, purged, n in rows:
                counts[PURGED if purged else key_id or PLAIN] += int(n)
            usage[name] = dict(sorted(counts.items()))
    return usage


def rotate(store: Store, *, batch: int = 500) -> RotateCounts:
    """Re-seal every payload not on the active key; returns how many rows moved.

    Raises:
        ConfigError: no key is configured, or a row's key is no longer in the keyring.
    """
    cipher = store.cipher
    if cipher.active_id is None:
        raise ConfigError(
            "no encryption key configured: nothing to rotate to",
            key="security.encryption_key_file",
        )
    counts = RotateCounts(active_key=cipher.active_id)
    for name, model in TABLES.items():
        while moved := _reseal_batch(store, model, cipher, batch):
            counts.resealed[name] += moved
    return counts


def _reseal_batch(store: Store, model: Any, cipher: PayloadCipher, batch: int) -> int:
    with store.session() as s:
        rows = s.exec(
            select(model)
            .where(
                col(model.purged_at).is_(None),
                or_(col(model.key_id).is_(None), col(model.key_id) != cipher.active_id),
            )
            .limit(batch)
            .with_for_update()
        ).all()
        for row in rows:
            _reseal(s, row, cipher)
        return len(rows)


def _reseal(s: Session, row: Any, cipher: PayloadCipher) -> None:
    if isinstance(row, ResourceRow):
        aad = resource_aad(row.resource_type, row.id)
        row.body, row.key_id = cipher.seal(cipher.open(row.body, row.key_id, aad), aad)
    else:
        aad = quarantine_aad(row.payload_hash)
        row.payload, row.key_id = cipher.seal(cipher.open(row.payload, row.key_id, aad), aad)
    s.add(row)
