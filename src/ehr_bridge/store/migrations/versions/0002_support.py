"""Support: referral versions, deliveries, write attempts, patient links, the audit log.

Also: patients can be inactive or linked by an operator (``active``, ``merged_into``), a
referral remembers the patient its trust record names (``natural_patient_id``), and a
quarantine entry remembers when it was closed. The audit table is append-only: triggers
refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL), so not even a support user with
SQL can rewrite what was done.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 11:14:17.346376
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_STRING = sqlmodel.sql.sqltypes.AutoString
_TIME = sqlmodel.sql.sqltypes.UTCDateTime

_SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event"
    " BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
    "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event"
    " BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
)
_POSTGRES_TRIGGERS = (
    "CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN RAISE EXCEPTION 'audit_event is append-only'; END $$",
    "CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event"
    " FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()",
    "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event"
    " FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()",
)


def upgrade() -> None:
    """Apply this revision."""
    _create_audit_event()
    _create_history_tables()
    _create_patient_link()
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.add_column(sa.Column("merged_into", _STRING(), nullable=True))
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", _TIME(), nullable=True))
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.add_column(sa.Column("natural_patient_id", _STRING(), nullable=True))


def _create_audit_event() -> None:
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", _TIME(), nullable=False),
        sa.Column("actor", _STRING(), nullable=False),
        sa.Column("action", _STRING(), nullable=False),
        sa.Column("reason", _STRING(), nullable=True),
        sa.Column("connection", _STRING(), nullable=True),
        sa.Column("referral_id", _STRING(), nullable=True),
        sa.Column("outbox_key", _STRING(), nullable=True),
        sa.Column("patient_id", _STRING(), nullable=True),
        sa.Column("outcome", _STRING(), nullable=True),
        sa.Column("trust_id", _STRING(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_event_at", "audit_event", ["at"])
    op.create_index("ix_audit_event_referral_id", "audit_event", ["referral_id"])
    triggers = _POSTGRES_TRIGGERS if op.get_context().dialect.name == "postgresql" else None
    for statement in triggers or _SQLITE_TRIGGERS:
        op.execute(statement)


def _create_history_tables() -> None:
    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection", _STRING(), nullable=False),
        sa.Column("referral_id", _STRING(), nullable=False),
        sa.Column("patient_id", _STRING(), nullable=False),
        sa.Column("fhir_hash", _STRING(), nullable=False),
        sa.Column("episodes", sa.Text(), nullable=False),
        sa.Column("delivered_at", _TIME(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_delivery_referral_id", "delivery", ["referral_id"])
    op.create_table(
        "referral_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection", _STRING(), nullable=False),
        sa.Column("referral_id", _STRING(), nullable=False),
        sa.Column("source_version", _STRING(), nullable=True),
        sa.Column("source_hash", _STRING(), nullable=False),
        sa.Column("fhir_hash", _STRING(), nullable=False),
        sa.Column("patient_id", _STRING(), nullable=False),
        sa.Column("status", _STRING(), nullable=False),
        sa.Column("pulled_at", _TIME(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_referral_version_referral_id", "referral_version", ["referral_id"])
    op.create_table(
        "write_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outbox_key", _STRING(), nullable=False),
        sa.Column("connection", _STRING(), nullable=False),
        sa.Column("referral_id", _STRING(), nullable=False),
        sa.Column("kind", _STRING(), nullable=False),
        sa.Column("outcome", _STRING(), nullable=False),
        sa.Column("trust_id", _STRING(), nullable=True),
        sa.Column("error_code", _STRING(), nullable=True),
        sa.Column("error", _STRING(), nullable=True),
        sa.Column("worker", _STRING(), nullable=True),
        sa.Column("at", _TIME(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_write_attempt_outbox_key", "write_attempt", ["outbox_key"])
    op.create_index("ix_write_attempt_referral_id", "write_attempt", ["referral_id"])


def _create_patient_link() -> None:
    op.create_table(
        "patient_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection", _STRING(), nullable=False),
        sa.Column("patient_id", _STRING(), nullable=False),
        sa.Column("other_patient_id", _STRING(), nullable=True),
        sa.Column("kind", _STRING(), nullable=False),
        sa.Column("reason", _STRING(), nullable=False),
        sa.Column("actor", _STRING(), nullable=False),
        sa.Column("referral_id", _STRING(), nullable=True),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("ended_at", _TIME(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_patient_link_patient_id", "patient_link", ["patient_id"])
    op.create_index("ix_patient_link_other_patient_id", "patient_link", ["other_patient_id"])


def downgrade() -> None:
    """Revert this revision (the audit log goes with it: export it first)."""
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.drop_column("natural_patient_id")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_column("closed_at")
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_column("merged_into")
        batch_op.drop_column("active")
    for table in ("patient_link", "write_attempt", "referral_version", "delivery"):
        op.drop_table(table)
    op.drop_table("audit_event")  # drops its triggers too
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_event_append_only()")
