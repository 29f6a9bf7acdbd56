"""Held scores: totals whose item answers have not been collected yet.

A provider may send a total score (Observation) in one bundle and the item answers it is
derived from (QuestionnaireResponse) in another. The score is stored, but it is not
written back until its items are here and agree; ``held_score`` remembers which scores
wait for which response. It holds ids and a time only, never patient data.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_STRING = sqlmodel.sql.sqltypes.AutoString
_INDEXED = ("response_id", "referral_id", "held_at")


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "held_score",
        sa.Column("connection", _STRING(), nullable=False),
        sa.Column("observation_id", _STRING(), nullable=False),
        sa.Column("response_id", _STRING(), nullable=False),
        sa.Column("referral_id", _STRING(), nullable=False),
        sa.Column("depends_on", _STRING(), nullable=True),
        sa.Column("held_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("connection", "observation_id"),
    )
    with op.batch_alter_table("held_score", schema=None) as batch_op:
        for column in _INDEXED:
            batch_op.create_index(batch_op.f(f"ix_held_score_{column}"), [column], unique=False)


def downgrade() -> None:
    """Revert this revision (refused while scores are held: they would never be written)."""
    held = op.get_bind().execute(sa.text("SELECT COUNT(*) FROM held_score"))
    if held.scalar_one():
        raise RuntimeError("held_score holds scores awaiting items: downgrading would lose them")
    with op.batch_alter_table("held_score", schema=None) as batch_op:
        for column in _INDEXED:
            batch_op.drop_index(batch_op.f(f"ix_held_score_{column}"))
    op.drop_table("held_score")
