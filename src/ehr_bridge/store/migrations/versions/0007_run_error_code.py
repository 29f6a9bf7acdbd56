"""A failed run's error code, for ``/healthz`` and ``status``.

``run.error`` keeps the run's PHI-free message; ``run.error_code`` keeps its code from the
error tree (``unreachable``, ``auth_refused``, ``deadline``, ``transient``, ...), so the
health check can say ``pull: failed (unreachable)`` without repeating any text.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision (earlier failed runs have no code)."""
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("error_code", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_column("error_code")
