"""Risk events ahead of routine write-backs: the outbox priority and the risk_event table.

A risk (PHQ-9 item 9 above zero, a provider's Flag) must reach the trust's duty team
within minutes, never behind a backlog of care contacts: ``outbox.priority`` orders the
claim (0, the risk lane, before 100, routine). ``risk_event`` follows each risk until the
trust acknowledges it or an operator resolves it, and remembers when an alert last went
out, so escalation repeats on schedule across restarts. Codes, ids and times only.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_STRING = sqlmodel.sql.sqltypes.AutoString
_TIME = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    """Apply this revision (existing rows are routine)."""
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("priority", sa.Integer(), nullable=False, server_default="100")
        )
        batch_op.create_index(batch_op.f("ix_outbox_priority"), ["priority"], unique=False)
    op.create_table(
        "risk_event",
        sa.Column("id", _STRING(), nullable=False),
        sa.Column("connection", _STRING(), nullable=False),
        sa.Column("referral_id", _STRING(), nullable=True),
        sa.Column("outbox_key", _STRING(), nullable=True),
        sa.Column("origin", _STRING(), nullable=False),
        sa.Column("level", _STRING(), nullable=False),
        sa.Column("reason", _STRING(), nullable=False),
        sa.Column("raised_at", _TIME(), nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("acknowledged_at", _TIME(), nullable=True),
        sa.Column("acknowledged_by", _STRING(), nullable=True),
        sa.Column("resolved_at", _TIME(), nullable=True),
        sa.Column("resolved_by", _STRING(), nullable=True),
        sa.Column("last_alert_at", _TIME(), nullable=True),
        sa.Column("alerts_sent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("risk_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_risk_event_connection"), ["connection"])
        batch_op.create_index(batch_op.f("ix_risk_event_referral_id"), ["referral_id"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("risk_event")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_priority"))
        batch_op.drop_column("priority")
