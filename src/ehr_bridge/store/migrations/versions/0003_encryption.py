"""Encryption at rest and retention: a key id and a purge time on every payload row.

``resource.body`` and ``quarantine.payload`` may now hold AES-GCM ciphertext; ``key_id``
names the key that sealed it (NULL: plain text, as every row written before this
revision). ``purged_at`` is set when the retention purge empties a payload; the row, its
hash and the lineage stay. ``ehr-bridge keys rotate`` encrypts the plain rows once a key
is configured.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TABLES = ("resource", "quarantine")


def upgrade() -> None:
    """Apply this revision."""
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
            )
            batch_op.add_column(
                sa.Column("purged_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
            )
            batch_op.create_index(batch_op.f(f"ix_{table}_key_id"), ["key_id"], unique=False)


def downgrade() -> None:
    """Revert this revision (refuse while any payload is still encrypted: decrypt first)."""
    for table in _TABLES:
        sealed = op.get_bind().execute(
            sa.text(f"SELECT COUNT(*) FROM {table} WHERE key_id IS NOT NULL")  # noqa: S608
        )
        if sealed.scalar_one():
            raise RuntimeError(f"{table} holds encrypted rows: downgrading would lose them")
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_key_id"))
            batch_op.drop_column("purged_at")
            batch_op.drop_column("key_id")
