"""What a referral means, apart from how it was sent: the meaning hash and echo versions.

A trust resends a message unchanged (a new MSH-7 and MSH-10, CRLF instead of CR), or
bumps a record's version because we wrote back to it. The raw record's hash differs each
time; the FHIR we build from it does not. ``referral.meaning_hash`` is the hash of the
Patient and ServiceRequest as built from the trust record (before operator links decorate
them), so a pull can tell a real change from a resend, and a version that only reflects
our own write-back (``referral_version.echo``) is kept in the lineage without being
delivered again. Hashes and a flag only, never patient data.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision (existing rows have no meaning hash: their next pull sets it)."""
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("meaning_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
    with op.batch_alter_table("referral_version", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("echo", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("referral_version", schema=None) as batch_op:
        batch_op.drop_column("echo")
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.drop_column("meaning_hash")
