"""Transactions over the state tables.

Each public method is one transaction, shaped after one step of a flow, so that the data
and the bookkeeping that says it was handled (cursor, outbox row, acknowledgement) can
never part: a crash leaves either both or neither.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, event, func, or_
from sqlalchemy import select as core_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, create_engine, select

import ehr_bridge.store.identity as identity
import ehr_bridge.store.pull_batch as pull_batch
from ehr_bridge.errors import ConfigError
from ehr_bridge.security.crypto import PayloadCipher, quarantine_aad, resource_aad
from ehr_bridge.security.files import private_dir
from ehr_bridge.store.audit import AuditEntry, AuditLog, add_audit
from ehr_bridge.store.bulk import canonical_json, chunks, close_open_quarantine, content_hash
from ehr_bridge.store.flow_leases import FlowLeases
from ehr_bridge.store.held_scores import HeldScores
from ehr_bridge.store.identity import Identity
from ehr_bridge.store.lineage import Lineage, add_delivery, add_version
from ehr_bridge.store.migrate import current_revision, head_revision, upgrade
from ehr_bridge.store.models import (
    CursorRow,
    OutboxRow,
    PatientRow,
    QuarantineRow,
    ReferralRow,
    ResourceRow,
    RunRow,
    utcnow,
)
from ehr_bridge.store.outbox import OutboxLeases
from ehr_bridge.store.repair import Repairs
from ehr_bridge.store.risks import RiskEvents
from ehr_bridge.store.submissions import Submissions
from ehr_bridge.store.values import (
    NewOutboxItem,
    NewQuarantine,
    PageState,
    PulledReferral,
    Restamp,
    Stored,
)

JsonDict = dict[str, Any]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for SQLite (file created 0600, WAL) or PostgreSQL (psycopg 3)."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url[len("sqlite:///") :])
        private_dir(path.parent)
        if not path.exists():
            path.touch(mode=0o600)
        os.chmod(path, 0o600)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = create_engine(url)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class Store(
    OutboxLeases,
    FlowLeases,
    AuditLog,
    Lineage,
    Identity,
    Repairs,
    Submissions,
    HeldScores,
    RiskEvents,
):
    """All reads and writes of ehr-bridge's state."""

    def __init__(
        self, url: str, *, migrate: bool | None = None, cipher: PayloadCipher | None = None
    ) -> None:
        """Open the store; ``migrate`` None means: upgrade SQLite, only check PostgreSQL.

        ``cipher`` encrypts resource bodies and quarantined payloads (docs/security.md);
        without one they are stored as plain text. ``security.keyring.open_store`` builds
        both from the config. A store holding payloads sealed with a key the cipher lacks
        is refused (ConfigError naming the key ids), so it is never written to in plain
        text or under another key.
        """
        self.engine = make_engine(url)
        self.cipher = cipher or PayloadCipher()
        try:
            if migrate is None:
                migrate = self.engine.dialect.name == "sqlite"
            if migrate and current_revision(self.engine) != head_revision():
                upgrade(self.engine)
            elif not migrate:
                self._require_current_schema()
            self.cipher.require_keys(self.payload_key_ids())
        except BaseException:
            self.engine.dispose()
            raise

    def _require_current_schema(self) -> None:
        current, head = current_revision(self.engine), head_revision()
        if current != head:
            raise ConfigError(
                f"the database schema is at {current or 'nothing'}, this version needs {head}:"
                " run `ehr-bridge db upgrade`",
                key="database.url",
            )

    def payload_key_ids(self) -> set[str]:
        """The ids of the keys sealing stored payloads (plain and purged rows have none).

        One index seek per distinct key (``min(key_id) > last``), not a scan of the rows.
        """
        found: set[str] = set()
        with self.session() as s:
            for model in (ResourceRow, QuarantineRow):
                last = ""
                while key_id := s.exec(
                    select(func.min(model.key_id)).where(col(model.key_id) > last)
                ).one():
                    found.add(key_id)
                    last = key_id
        return found

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    # --- pull ------------------------------------------------------------------------
    def get_cursor(self, connection: str) -> str | None:
        """The connection's pull cursor, or None before the first pull."""
        with self.session() as s:
            row = s.get(CursorRow, connection)
            return row.value if row else None

    def pull_page_state(self, connection: str, record_refs: Sequence[str]) -> PageState:
        """What is stored for a page's records, in two queries instead of two per record."""
        hashes: dict[str, str] = {}
        current: dict[str, Stored] = {}
        held: set[tuple[str, str]] = set()
        with self.session() as s:
            for chunk in chunks(record_refs):
                query = core_select(
                    col(ReferralRow.trust_referral_id),
                    col(ReferralRow.source_hash),
                    col(ReferralRow.id),
                    col(ReferralRow.source_version),
                    col(ReferralRow.status),
                    col(ReferralRow.fhir_hash),
                    col(ReferralRow.delivered_hash),
                    col(ReferralRow.meaning_hash),
                ).where(
                    col(ReferralRow.connection) == connection,
                    col(ReferralRow.trust_referral_id).in_(chunk),
                )
                for ref, digest, *stored in s.execute(query):
                    hashes[ref] = digest
                    current[ref] = Stored(*stored)
                open_entries = select(QuarantineRow.record_ref, QuarantineRow.payload_hash).where(
                    QuarantineRow.connection == connection,
                    QuarantineRow.state == "open",
                    col(QuarantineRow.record_ref).in_(chunk),
                )
                held.update((ref, digest) for ref, digest in s.exec(open_entries))
        return PageState(hashes, held, current)

    def save_pull_page(
        self,
        connection: str,
        referrals: Sequence[PulledReferral],
        quarantines: Sequence[NewQuarantine],
        cursor: str | None,
        *,
        cursor_name: str | None = None,
        restamps: Sequence[Restamp] = (),
        audits: Sequence[AuditEntry] = (),
    ) -> list[tuple[str, str]]:
        """Upsert a page's referrals and quarantine entries and move the cursor, together.

        ``restamps`` are records that changed in form only (resends): their raw hash is
        remembered, nothing else. ``audits`` record what the page left alone on purpose
        (a cancel for a referral never held). Returns the patient identity changes seen, as
        (referral id, kind) pairs.
        """
        changes: list[tuple[str, str]] = []
        now = utcnow()
        with self.session() as s:
            plain, careful = pull_batch.split_page(s, referrals)
            pull_batch.save_plain(s, self.cipher, connection, plain, now)
            pull_batch.restamp(s, connection, restamps, now)
            refs = [r.trust_referral_id for r in plain]
            refs += [r.trust_referral_id for r in restamps]
            close_open_quarantine(s, connection, refs, "resolved", now)
            for referral in careful:
                changes += self._upsert_referral(s, connection, referral)
            pull_batch.settle_echoes(s, referrals)
            for action in audits:
                add_audit(s, action)
            for entry in quarantines:
                self._add_quarantine(s, connection, entry)
            if cursor is not None:
                key = cursor_name or connection
                row = s.get(CursorRow, key) or CursorRow(connection=key)
                row.value, row.updated_at = cursor, now
                s.add(row)
        return changes

    def _upsert_referral(
        self, s: Session, connection: str, pulled: PulledReferral
    ) -> list[tuple[str, str]]:
        patient_id = pulled.patient["id"]
        natural_id = pulled.natural_patient_id or patient_id
        sr = pulled.service_request
        row = s.get(ReferralRow, sr["id"])
        changes = identity.detect_changes(s, row, natural_id, pulled.nhs_number)
        survivor = identity.reactivate(s, natural_id)
        patient = s.get(PatientRow, natural_id) or PatientRow(
            id=natural_id, connection=connection, local_id=pulled.patient_local_id
        )
        patient.nhs_number, patient.updated_at = pulled.nhs_number, utcnow()
        s.add(patient)
        s.flush()
        for retired in identity.record_changes(s, connection, sr["id"], changes):
            self._redecorate(s, retired)
        if survivor is not None:
            self._redecorate(s, survivor)
        patient_resource = self._store_patient(s, connection, pulled.patient, natural_id)
        self._put_resource(s, connection, sr["id"], sr)
        fhir_hash = content_hash([patient_resource, sr])
        if row is None:
            row = ReferralRow(
                id=sr["id"],
                connection=connection,
                trust_referral_id=pulled.trust_referral_id,
                patient_id=patient_id,
                source_hash=pulled.source_hash,
                fhir_hash=fhir_hash,
                status=pulled.status,
            )
        row.source_hash, row.source_version = pulled.source_hash, pulled.source_version
        row.fhir_hash, row.status, row.last_pulled_at = fhir_hash, pulled.status, utcnow()
        row.patient_id, row.natural_patient_id = patient_id, natural_id
        row.meaning_hash = pulled.meaning_hash
        s.add(row)
        add_version(s, row, echo=pulled.echo)
        self._resolve_quarantine(s, connection, pulled.trust_referral_id)
        return [(row.id, change.kind) for change in changes]

    def _refresh_hashes(self, s: Session, referral_ids: list[str]) -> None:
        """New FHIR hashes for referrals whose patient changed, so deliver sends them again."""
        for referral_id in referral_ids:
            row = s.get(ReferralRow, referral_id)
            if row is None:
                continue
            patient = self._get_resource(s, "Patient", row.patient_id)
            row.fhir_hash = content_hash([patient, self._get_resource(s, "ServiceRequest", row.id)])
            s.add(row)

    def _put_resource(
        self, s: Session, connection: str, referral_id: str | None, resource: JsonDict
    ) -> None:
        key = (resource["resourceType"], resource["id"])
        row = s.get(ResourceRow, key) or ResourceRow(
            resource_type=key[0], id=key[1], connection=connection, body="", content_hash=""
        )
        sealed = self.cipher.seal(canonical_json(resource), resource_aad(key[0], key[1]))
        row.body, row.key_id, row.purged_at = sealed[0], sealed[1], None
        row.content_hash = content_hash(resource)
        row.referral_id = referral_id or row.referral_id
        row.updated_at = utcnow()
        s.add(row)

    def _get_resource(self, s: Session, resource_type: str, resource_id: str) -> JsonDict | None:
        """A stored resource as JSON, inside the caller's transaction."""
        row = s.get(ResourceRow, (resource_type, resource_id))
        return self._open_resource(row) if row else None

    def _open_resource(self, row: ResourceRow) -> JsonDict | None:
        """A row's resource, decrypted; None once the retention purge emptied it."""
        if row.purged_at is not None:
            return None
        aad = resource_aad(row.resource_type, row.id)
        resource: JsonDict = json.loads(self.cipher.open(row.body, row.key_id, aad))
        return resource

    def _add_quarantine(self, s: Session, connection: str, entry: NewQuarantine) -> None:
        self._close_quarantine(s, connection, entry.record_ref, "superseded")
        payload_hash = content_hash(entry.payload)
        payload, key_id = self.cipher.seal(
            canonical_json(entry.payload), quarantine_aad(payload_hash)
        )
        s.add(
            QuarantineRow(
                connection=connection,
                source=entry.source,
                record_ref=entry.record_ref,
                field=entry.field,
                code=entry.code,
                reason=entry.reason,
                payload_hash=payload_hash,
                payload=payload,
                key_id=key_id,
            )
        )

    def _resolve_quarantine(self, s: Session, connection: str, record_ref: str) -> None:
        self._close_quarantine(s, connection, record_ref, "resolved")

    def _close_quarantine(self, s: Session, connection: str, record_ref: str, state: str) -> None:
        """Close a record's open entries: fixed (resolved) or replaced by a newer failure."""
        rows = s.exec(
            select(QuarantineRow).where(
                QuarantineRow.connection == connection,
                QuarantineRow.record_ref == record_ref,
                QuarantineRow.state == "open",
            )
        ).all()
        for row in rows:
            row.state, row.closed_at = state, utcnow()
            s.add(row)

    # --- deliver ---------------------------------------------------------------------
    def referrals_to_deliver(
        self, connection: str, limit: int = 500, after: tuple[datetime, str] | None = None
    ) -> list[ReferralRow]:
        """One page of the referrals whose current FHIR has not been handed over yet.

        Oldest first (first pulled, then id). ``after`` is the (``first_pulled_at``,
        ``id``) of the last row of the page before, so deliver walks a queue of any length
        a page at a time; the first page has none.
        """
        order = (col(ReferralRow.first_pulled_at), col(ReferralRow.id))
        with self.session() as s:
            query = select(ReferralRow).where(
                ReferralRow.connection == connection,
                or_(
                    col(ReferralRow.delivered_hash).is_(None),
                    col(ReferralRow.delivered_hash) != col(ReferralRow.fhir_hash),
                ),
            )
            if after is not None:
                query = query.where(
                    or_(order[0] > after[0], and_(order[0] == after[0], order[1] > after[1]))
                )
            return list(s.exec(query.order_by(*order).limit(limit)).all())

    def resource(self, resource_type: str, resource_id: str) -> JsonDict | None:
        """A stored FHIR resource as JSON."""
        with self.session() as s:
            return self._get_resource(s, resource_type, resource_id)

    def resources_for_referral(self, referral_id: str) -> list[JsonDict]:
        """Every stored resource that belongs to a referral (session artefacts included)."""
        with self.session() as s:
            rows = s.exec(
                select(ResourceRow)
                .where(ResourceRow.referral_id == referral_id)
                .order_by(col(ResourceRow.resource_type), col(ResourceRow.id))
            ).all()
            opened = (self._open_resource(r) for r in rows)
            return [resource for resource in opened if resource is not None]

    def mark_delivered(
        self,
        referral_id: str,
        fhir_hash: str,
        outbox: Sequence[NewOutboxItem],
        episodes: Sequence[str] = (),
    ) -> None:
        """Record a delivery (with the earlier episodes it carried) and queue its write-backs."""
        with self.session() as s:
            row = s.get(ReferralRow, referral_id)
            if row is None:
                return
            row.delivered_hash, row.delivered_at = fhir_hash, utcnow()
            s.add(row)
            add_delivery(s, row, episodes)
            for item in outbox:
                self._queue(s, row.connection, item)

    def _queue(self, s: Session, connection: str, item: NewOutboxItem) -> None:
        if s.get(OutboxRow, item.key) is not None:
            return
        s.add(
            OutboxRow(
                id=item.key,
                connection=connection,
                referral_id=item.referral_id,
                kind=item.kind,
                resource_type=item.resource_type,
                resource_id=item.resource_id,
                depends_on=item.depends_on,
                context=canonical_json(item.context),
            )
        )

    # --- collect ---------------------------------------------------------------------
    def referral(self, referral_id: str) -> ReferralRow | None:
        """One ledger entry by internal id."""
        with self.session() as s:
            return s.get(ReferralRow, referral_id)

    # --- runs and listings -----------------------------------------------------------
    def record_run(
        self,
        connection: str,
        flow: str,
        started_at: datetime,
        counts: JsonDict,
        error: str | None = None,
        error_code: str | None = None,
    ) -> None:
        """Remember a flow run for `status` and ``/healthz`` (a failure: its text and code)."""
        with self.session() as s:
            s.add(
                RunRow(
                    connection=connection,
                    flow=flow,
                    started_at=started_at,
                    finished_at=utcnow(),
                    ok=error is None,
                    counts=canonical_json(counts),
                    error=error,
                    error_code=error_code if error is not None else None,
                )
            )

    def last_runs(self, connection: str) -> dict[str, RunRow]:
        """The latest run of each flow.

        A daemon records a run per flow every few seconds, so a connection gathers
        hundreds of thousands of rows; the database picks each flow's latest and only
        those rows are loaded (`status` and `/healthz` ask often).
        """
        latest = (
            select(func.max(RunRow.id))
            .where(RunRow.connection == connection)
            .group_by(col(RunRow.flow))
        )
        with self.session() as s:
            rows = s.exec(select(RunRow).where(col(RunRow.id).in_(latest.scalar_subquery())))
            return {row.flow: row for row in rows}

    def last_error(self, connection: str) -> RunRow | None:
        """The latest failed run."""
        with self.session() as s:
            return s.exec(
                select(RunRow)
                .where(RunRow.connection == connection, col(RunRow.ok).is_(False))
                .order_by(col(RunRow.id).desc())
                .limit(1)
            ).first()

    def outbox_counts(self, connection: str) -> dict[str, int]:
        """Outbox rows by state."""
        with self.session() as s:
            rows = s.exec(
                select(OutboxRow.state, func.count())
                .where(OutboxRow.connection == connection)
                .group_by(OutboxRow.state)
            ).all()
            return {state: int(n) for state, n in rows}

    def quarantine_count(self, connection: str) -> int:
        """Open quarantine entries."""
        with self.session() as s:
            n = s.exec(
                select(func.count()).where(
                    QuarantineRow.connection == connection, QuarantineRow.state == "open"
                )
            ).one()
            return int(n)

    def referral_counts(self, connection: str) -> dict[str, int]:
        """Referrals pulled and delivered."""
        with self.session() as s:
            total = s.exec(select(func.count()).where(ReferralRow.connection == connection)).one()
            delivered = s.exec(
                select(func.count()).where(
                    ReferralRow.connection == connection,
                    col(ReferralRow.delivered_hash).is_not(None),
                )
            ).one()
            return {"pulled": int(total), "delivered": int(delivered)}

    def list_referrals(self, connection: str | None = None) -> list[ReferralRow]:
        """Referrals, oldest first."""
        with self.session() as s:
            query = select(ReferralRow).order_by(col(ReferralRow.first_pulled_at))
            if connection:
                query = query.where(ReferralRow.connection == connection)
            return list(s.exec(query).all())

    def find_referral(self, ref: str) -> ReferralRow | None:
        """A referral by internal id or trust referral id."""
        with self.session() as s:
            row = s.get(ReferralRow, ref)
            if row is not None:
                return row
            return s.exec(select(ReferralRow).where(ReferralRow.trust_referral_id == ref)).first()

    def outbox_rows(
        self,
        *,
        connection: str | None = None,
        state: str | None = None,
        referral_id: str | None = None,
    ) -> list[OutboxRow]:
        """Outbox rows filtered by connection, state and referral."""
        with self.session() as s:
            query = select(OutboxRow).order_by(col(OutboxRow.created_at), col(OutboxRow.id))
            if connection:
                query = query.where(OutboxRow.connection == connection)
            if state:
                query = query.where(OutboxRow.state == state)
            if referral_id:
                query = query.where(OutboxRow.referral_id == referral_id)
            return list(s.exec(query).all())

    def quarantine_rows(
        self, *, connection: str | None = None, state: str | None = "open"
    ) -> list[QuarantineRow]:
        """Quarantine entries, newest last."""
        with self.session() as s:
            query = select(QuarantineRow).order_by(col(QuarantineRow.id))
            if connection:
                query = query.where(QuarantineRow.connection == connection)
            if state:
                query = query.where(QuarantineRow.state == state)
            return list(s.exec(query).all())

    def held_quarantine_refs(
        self, connection: str, source: str, closed_after: datetime
    ) -> set[str]:
        """``record_ref`` of the entries whose raw record retention still keeps.

        Those open, or closed after ``closed_after``: the files an adapter keeps for them
        (an unreadable submission's only copy) must stay as long.
        """
        with self.session() as s:
            query = select(QuarantineRow.record_ref).where(
                QuarantineRow.connection == connection,
                QuarantineRow.source == source,
                or_(
                    col(QuarantineRow.state) == "open",
                    col(QuarantineRow.closed_at) > closed_after,
                    and_(
                        col(QuarantineRow.closed_at).is_(None),
                        col(QuarantineRow.created_at) > closed_after,
                    ),
                ),
            )
            return set(s.exec(query).all())

    def quarantine_entry(self, entry_id: int) -> QuarantineRow | None:
        """One quarantine entry by id."""
        with self.session() as s:
            return s.get(QuarantineRow, entry_id)

    def quarantine_payload(self, entry_id: int) -> JsonDict | None:
        """The raw record of a quarantine entry (patient data: only for `--payload`, retry)."""
        with self.session() as s:
            row = s.get(QuarantineRow, entry_id)
            if row is None or row.purged_at is not None:
                return None
            text = self.cipher.open(row.payload, row.key_id, quarantine_aad(row.payload_hash))
            payload: JsonDict = json.loads(text)
            return payload

    def close_quarantine_entry(self, entry_id: int, state: str, audit: AuditEntry) -> bool:
        """Close one open entry (e.g. dismissed) with its audit entry; False if it is not open."""
        with self.session() as s:
            row = s.get(QuarantineRow, entry_id)
            if row is None or row.state != "open":
                return False
            row.state, row.closed_at = state, utcnow()
            s.add(row)
            add_audit(s, audit)
            return True
