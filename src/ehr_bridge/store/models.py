"""State tables: cursors, the ledger (trust record -> FHIR -> receipts), outbox, quarantine.

The history tables at the end (referral versions, deliveries, write attempts, patient
links, the audit log) exist so support staff can answer "what happened to this record?"
from the CLI. They hold internal ids, hashes, codes and times: never patient data.

Datetimes are timezone-aware UTC everywhere; ``utcnow`` is the one clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Text, UniqueConstraint, false, true
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Aware UTC now, the form every datetime column holds."""
    return datetime.now(UTC)


class CursorRow(SQLModel, table=True):
    """How far a connection's pull has got (the trust's updated_at, closed start)."""

    __tablename__ = "cursor"
    connection: str = Field(primary_key=True)
    value: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class PatientRow(SQLModel, table=True):
    """One patient per NHS number (or per trust local id when there is none)."""

    __tablename__ = "patient"
    __table_args__ = (UniqueConstraint("connection", "local_id"),)
    id: str = Field(primary_key=True)
    connection: str = Field(index=True)
    local_id: str
    nhs_number: str | None = Field(default=None, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    #: False once no referral is this patient's any more (merged at the trust or linked)
    active: bool = Field(default=True, sa_column_kwargs={"server_default": true()})
    #: set by an operator's `patients link`: referrals of this patient go to that one
    merged_into: str | None = None


class ReferralRow(SQLModel, table=True):
    """The ledger entry for one trust referral: its hashes, FHIR ids and delivery state."""

    __tablename__ = "referral"
    __table_args__ = (UniqueConstraint("connection", "trust_referral_id"),)
    id: str = Field(primary_key=True)  # the ServiceRequest id
    connection: str = Field(index=True)
    trust_referral_id: str
    patient_id: str = Field(index=True)
    source_hash: str
    source_version: str | None = None
    fhir_hash: str
    status: str
    delivered_hash: str | None = None
    delivered_at: datetime | None = None
    first_pulled_at: datetime = Field(default_factory=utcnow)
    last_pulled_at: datetime = Field(default_factory=utcnow)
    #: the patient the trust record itself names (before operator links are followed)
    natural_patient_id: str | None = None
    #: hash of the Patient and ServiceRequest as built from the trust record, before any
    #: decoration: equal for a resend, so only real changes make versions (None: legacy)
    meaning_hash: str | None = None


class ResourceRow(SQLModel, table=True):
    """Every FHIR resource we hold, as JSON, keyed by type and deterministic id."""

    __tablename__ = "resource"
    resource_type: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    connection: str = Field(index=True)
    referral_id: str | None = Field(default=None, index=True)
    body: str = Field(sa_column=Column(Text, nullable=False))
    content_hash: str
    #: the key that encrypted the payload (None: plain text); see ehr_bridge.security.crypto
    key_id: str | None = Field(default=None, index=True)
    #: when the retention purge emptied the payload (its hash and the lineage stay)
    purged_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class OutboxRow(SQLModel, table=True):
    """One write-back to the trust, keyed by its idempotency key (also its client reference)."""

    __tablename__ = "outbox"
    id: str = Field(primary_key=True)
    connection: str = Field(index=True)
    referral_id: str = Field(index=True)
    kind: str
    resource_type: str
    resource_id: str
    depends_on: str | None = None
    context: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    #: lower is claimed first: 0 is the risk lane (``values.RISK_PRIORITY``), 100 routine
    priority: int = Field(default=100, index=True)
    state: str = Field(default="pending", index=True)  # pending|in_flight|done|dead|cancelled
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    last_error: str | None = None
    last_error_code: str | None = None
    trust_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    done_at: datetime | None = None


class RiskEventRow(SQLModel, table=True):
    """A risk the trust's duty team must see: its write-back, acknowledgement and alerts.

    ``origin`` is ``session`` (a risk in a stored bundle, written back through
    ``outbox_key``) or ``quarantine`` (a refused bundle that held a risk: nothing can be
    written, so it pages at once). Codes, ids and times only; never patient data or text.
    """

    __tablename__ = "risk_event"
    id: str = Field(primary_key=True)
    connection: str = Field(index=True)
    referral_id: str | None = Field(default=None, index=True)
    outbox_key: str | None = None
    origin: str  # session | quarantine
    level: str  # routine_review | urgent | immediate
    reason: str
    raised_at: datetime
    created_at: datetime = Field(default_factory=utcnow)
    acknowledged_at: datetime | None = None
    #: the trust's id of who acknowledged (shape-checked by the adapter), never a name
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    last_alert_at: datetime | None = None
    alerts_sent: int = 0


class QuarantineRow(SQLModel, table=True):
    """A record that could not be mapped or validated, with the field and reason."""

    __tablename__ = "quarantine"
    id: int | None = Field(default=None, primary_key=True)
    connection: str = Field(index=True)
    source: str  # referral | submission
    record_ref: str
    field: str | None = None
    code: str
    reason: str
    payload_hash: str = Field(index=True)
    payload: str = Field(default="", sa_column=Column(Text, nullable=False))
    #: the key that encrypted the payload (None: plain text); see ehr_bridge.security.crypto
    key_id: str | None = Field(default=None, index=True)
    #: when the retention purge emptied the payload (its hash and the lineage stay)
    purged_at: datetime | None = None
    state: str = Field(default="open", index=True)  # open|resolved|dismissed|superseded
    created_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None


class SubmissionRow(SQLModel, table=True):
    """A provider submission already stored, so a re-offered file is not stored twice."""

    __tablename__ = "submission"
    connection: str = Field(primary_key=True)
    bundle_hash: str = Field(primary_key=True)
    handle: str
    referral_id: str | None = None
    collected_at: datetime = Field(default_factory=utcnow)


class HeldScoreRow(SQLModel, table=True):
    """A stored total score waiting for its item answers, which have not been collected yet.

    Its QuestionnaireResponse (``response_id``, named by ``derivedFrom``) comes in another
    bundle; until it is here and the items agree, no write-back exists for the score. The
    row goes when that bundle is stored: the score is then queued or quarantined.
    """

    __tablename__ = "held_score"
    connection: str = Field(primary_key=True)
    observation_id: str = Field(primary_key=True)
    response_id: str = Field(index=True)
    referral_id: str = Field(index=True)
    #: the care contact the score's write-back waits for, as when it was collected
    depends_on: str | None = None
    held_at: datetime = Field(default_factory=utcnow, index=True)


class RunRow(SQLModel, table=True):
    """One run of one flow, for `status` (last run, last error)."""

    __tablename__ = "run"
    id: int | None = Field(default=None, primary_key=True)
    connection: str = Field(index=True)
    flow: str
    started_at: datetime
    finished_at: datetime
    ok: bool
    counts: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    error: str | None = None
    #: the failed run's error code (``EhrBridgeError.code``: ``unreachable``, ``auth_refused``)
    error_code: str | None = None


class FlowLeaseRow(SQLModel, table=True):
    """Which worker runs a connection's pull, deliver or collect right now.

    Those flows walk one cursor or one folder, so one worker at a time runs each; push is
    shared row by row through the outbox leases instead.
    """

    __tablename__ = "flow_lease"
    connection: str = Field(primary_key=True)
    flow: str = Field(primary_key=True)
    owner: str
    expires_at: datetime


class ReferralVersionRow(SQLModel, table=True):
    """One changed trust record as pulled: which version, its hash, the patient it named."""

    __tablename__ = "referral_version"
    id: int | None = Field(default=None, primary_key=True)
    connection: str
    referral_id: str = Field(index=True)
    source_version: str | None = None
    source_hash: str
    fhir_hash: str
    patient_id: str
    status: str
    pulled_at: datetime = Field(default_factory=utcnow)
    #: the change only reflects our own write-back (e.g. the discharge we sent): kept in
    #: the lineage, never delivered back to the provider
    echo: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class DeliveryRow(SQLModel, table=True):
    """One hand-over of a referral to the provider, with the earlier episodes it carried."""

    __tablename__ = "delivery"
    id: int | None = Field(default=None, primary_key=True)
    connection: str
    referral_id: str = Field(index=True)
    patient_id: str
    fhir_hash: str
    episodes: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    delivered_at: datetime = Field(default_factory=utcnow)


class WriteAttemptRow(SQLModel, table=True):
    """One finished attempt at a write-back (or a forced update) and what came of it."""

    __tablename__ = "write_attempt"
    id: int | None = Field(default=None, primary_key=True)
    outbox_key: str = Field(index=True)
    connection: str
    referral_id: str = Field(index=True)
    kind: str
    outcome: str  # written | already_present | retry | dead | updated | update_failed
    trust_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    worker: str | None = None
    at: datetime = Field(default_factory=utcnow)


class PatientLinkRow(SQLModel, table=True):
    """Identity history: merges seen at the trust, operator links, NHS number changes.

    ``other_patient_id`` is the patient merged away or linked (None for NHS number events);
    an operator link ends (``ended_at``) when it is unlinked, it is never deleted.
    """

    __tablename__ = "patient_link"
    id: int | None = Field(default=None, primary_key=True)
    connection: str
    patient_id: str = Field(index=True)
    other_patient_id: str | None = Field(default=None, index=True)
    kind: str
    reason: str
    actor: str
    referral_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None


class AuditEventRow(SQLModel, table=True):
    """Append-only: every operator action and every write to a trust record.

    Database triggers refuse UPDATE and DELETE on both backends (migration 0002).
    ``detail`` is JSON of codes, ids and field names only, never values.
    """

    __tablename__ = "audit_event"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str
    action: str
    reason: str | None = None
    connection: str | None = None
    referral_id: str | None = Field(default=None, index=True)
    outbox_key: str | None = None
    patient_id: str | None = None
    outcome: str | None = None
    trust_id: str | None = None
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False))
