"""Patient identity over time: merges at the trust, operator links, NHS number changes.

A patient is found by NHS number first, then by (connection, trust local id): that is the
*natural* patient of a referral, the one its trust record names. An operator may link two
patients (``patients link``); the referrals of the one linked away then belong to the one
kept (the *effective* patient). Nothing is deleted: a patient merged away at the trust,
or linked, stays with ``active`` false and a FHIR ``replaced-by`` link, and every change
is a row of ``patient_link`` with its reason. Rows hold ids and kinds, never numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, or_, select

from ehr_bridge.errors import ConflictError, TerminalError
from ehr_bridge.store.audit import AuditEntry, add_audit
from ehr_bridge.store.bulk import chunks
from ehr_bridge.store.models import PatientLinkRow, PatientRow, ReferralRow, utcnow

JsonDict = dict[str, Any]
PULL_ACTOR = "ehr-bridge pull"
_NHS_EVENTS = {
    (False, True): ("nhs_number_added", "NHS number traced and added at the trust"),
    (True, True): ("nhs_number_corrected", "NHS number corrected at the trust"),
    (True, False): ("nhs_number_removed", "NHS number removed at the trust"),
}


@dataclass(frozen=True)
class PatientMatch:
    """Who a trust record's patient is: as the record names them, and after links."""

    natural_id: str | None  # None: a patient we have never seen
    effective_id: str | None


@dataclass(frozen=True)
class IdentityChange:
    """One identity event seen on pull (``other_patient_id``: the patient moved away from)."""

    kind: str
    patient_id: str
    reason: str
    other_patient_id: str | None = None


def natural_of(row: ReferralRow) -> str:
    """The patient a referral's trust record names (rows from before 0002 have only one)."""
    return row.natural_patient_id or row.patient_id


def follow_links(s: Session, patient_id: str) -> str:
    """The patient an operator link chain ends at (cycles are refused when linking)."""
    seen = {patient_id}
    row = s.get(PatientRow, patient_id)
    while row is not None and row.merged_into and row.merged_into not in seen:
        seen.add(row.merged_into)
        patient_id, row = row.merged_into, s.get(PatientRow, row.merged_into)
    return patient_id


def detect_changes(
    s: Session, old: ReferralRow | None, natural_id: str, nhs_number: str | None
) -> list[IdentityChange]:
    """What changed about the patient of this referral since its last stored version."""
    before = s.get(PatientRow, natural_id)
    if old is not None and natural_of(old) != natural_id:
        kind = "trust_merge" if before is not None else "patient_changed"
        reason = (
            "the trust moved the referral to another known patient (merge)"
            if before is not None
            else "the trust moved the referral to a patient not seen before"
        )
        return [IdentityChange(kind, natural_id, reason, natural_of(old))]
    if before is None or before.nhs_number == nhs_number:
        return []
    kind, reason = _NHS_EVENTS[(before.nhs_number is not None, nhs_number is not None)]
    return [IdentityChange(kind, natural_id, reason)]


def record_changes(
    s: Session, connection: str, referral_id: str, changes: Iterable[IdentityChange]
) -> list[str]:
    """Add the history rows; retire patients no referral names any more (returned)."""
    retired = []
    for change in changes:
        s.add(
            PatientLinkRow(
                connection=connection,
                patient_id=change.patient_id,
                other_patient_id=change.other_patient_id,
                kind=change.kind,
                reason=change.reason,
                actor=PULL_ACTOR,
                referral_id=referral_id,
            )
        )
        detail = {"kind": change.kind, "from": change.other_patient_id, "to": change.patient_id}
        entry = AuditEntry(
            f"identity.{change.kind}",
            PULL_ACTOR,
            change.reason,
            connection=connection,
            referral_id=referral_id,
            patient_id=change.patient_id,
            detail=detail,
        )
        add_audit(s, entry)
        old = change.other_patient_id
        if old and not _still_named(s, old, referral_id):
            _retire(s, old)
            retired.append(old)
    return retired


def _still_named(s: Session, patient_id: str, except_referral: str) -> bool:
    natural = func.coalesce(col(ReferralRow.natural_patient_id), col(ReferralRow.patient_id))
    query = select(ReferralRow.id).where(natural == patient_id, ReferralRow.id != except_referral)
    return s.exec(query).first() is not None


def _retire(s: Session, patient_id: str) -> None:
    row = s.get(PatientRow, patient_id)
    if row is not None:
        row.active, row.updated_at = False, utcnow()
        s.add(row)


def reactivate(s: Session, patient_id: str) -> str | None:
    """A retired patient named again by the trust (merge undone): back to active.

    Returns the patient it had been merged into, whose links must be redrawn.
    """
    row = s.get(PatientRow, patient_id)
    if row is None or row.active or row.merged_into:
        return None
    row.active, row.updated_at = True, utcnow()
    s.add(row)
    survivor = None
    for link in _open_merges(s, other=patient_id):
        link.ended_at, survivor = utcnow(), link.patient_id
        s.add(link)
    return survivor


def _open_merges(s: Session, *, other: str | None = None, kept: str | None = None) -> list[Any]:
    query = select(PatientLinkRow).where(
        PatientLinkRow.kind == "trust_merge", col(PatientLinkRow.ended_at).is_(None)
    )
    if other is not None:
        query = query.where(PatientLinkRow.other_patient_id == other)
    if kept is not None:
        query = query.where(PatientLinkRow.patient_id == kept)
    return list(s.exec(query.order_by(col(PatientLinkRow.id))).all())


def replaced_by(s: Session, patient_id: str) -> str | None:
    """The patient this one was merged into (operator link or trust merge), if retired."""
    row = s.get(PatientRow, patient_id)
    if row is None or row.active:
        return None
    if row.merged_into:
        return row.merged_into
    merges = _open_merges(s, other=patient_id)
    return str(merges[-1].patient_id) if merges else None


def replaces(s: Session, patient_id: str) -> list[str]:
    """Retired patients merged into this one."""
    linked = s.exec(select(PatientRow.id).where(PatientRow.merged_into == patient_id)).all()
    merged = [link.other_patient_id for link in _open_merges(s, kept=patient_id)]
    return sorted({*linked, *(m for m in merged if m and replaced_by(s, m) == patient_id)})


def decorate(s: Session, patient: JsonDict) -> JsonDict:
    """The Patient resource with the links its history calls for."""
    from ehr_bridge.domain.referral import with_patient_links  # the FHIR model, when needed

    pid = patient["id"]
    return with_patient_links(patient, replaces=replaces(s, pid), replaced_by=replaced_by(s, pid))


class Identity:
    """Mixed into ``Store``: find, show, link and unlink patients."""

    session: Callable[[], Any]
    _put_resource: Callable[[Session, str, str | None, JsonDict], None]
    _get_resource: Callable[[Session, str, str], JsonDict | None]
    _refresh_hashes: Callable[[Session, list[str]], None]

    def resolve_patient(
        self, connection: str, nhs_number: str | None, local_id: str
    ) -> PatientMatch:
        """The patient a trust record names (NHS number first), and who they are after links."""
        (match,) = self.resolve_patients(connection, [(nhs_number, local_id)])
        return match

    def resolve_patients(
        self, connection: str, keys: Sequence[tuple[str | None, str]]
    ) -> list[PatientMatch]:
        """``resolve_patient`` for a page of (NHS number, local id) keys, in a few queries.

        Only a patient an operator linked away needs more: its link chain is followed row
        by row, as ``resolve_patient`` does.
        """
        numbers = [n for n, _ in keys if n]
        by_number: dict[str, PatientRow] = {}
        by_local: dict[str, PatientRow] = {}
        with self.session() as s:
            for chunk in chunks(numbers):
                query = select(PatientRow).where(col(PatientRow.nhs_number).in_(chunk))
                for row in s.exec(query):
                    current = by_number.get(row.nhs_number or "")
                    if current is None or (row.active and not current.active):
                        by_number[row.nhs_number or ""] = row
            for chunk in chunks([local for _, local in keys]):
                query = select(PatientRow).where(
                    PatientRow.connection == connection, col(PatientRow.local_id).in_(chunk)
                )
                by_local.update((row.local_id, row) for row in s.exec(query))
            matches = []
            for nhs_number, local_id in keys:
                row = (by_number.get(nhs_number) if nhs_number else None) or by_local.get(local_id)
                if row is None:
                    matches.append(PatientMatch(None, None))
                elif row.merged_into:
                    matches.append(PatientMatch(row.id, follow_links(s, row.id)))
                else:
                    matches.append(PatientMatch(row.id, row.id))
            return matches

    def patient(self, patient_id: str) -> PatientRow | None:
        """One patient row by FHIR id."""
        with self.session() as s:
            row: PatientRow | None = s.get(PatientRow, patient_id)
            return row

    def patients_by_nhs_number(self, nhs_number: str) -> list[PatientRow]:
        """Patients holding this NHS number (matched here, never printed)."""
        with self.session() as s:
            return list(s.exec(select(PatientRow).where(PatientRow.nhs_number == nhs_number)))

    def patients_with_prefix(self, prefix: str) -> list[PatientRow]:
        """Patients whose id starts with ``prefix`` (tables print shortened ids)."""
        with self.session() as s:
            query = select(PatientRow).where(col(PatientRow.id).startswith(prefix))
            return list(s.exec(query.limit(10)).all())

    def patient_history(self, patient_id: str) -> list[PatientLinkRow]:
        """Identity events that name this patient on either side, oldest first."""
        with self.session() as s:
            query = select(PatientLinkRow).where(
                or_(
                    PatientLinkRow.patient_id == patient_id,
                    PatientLinkRow.other_patient_id == patient_id,
                )
            )
            return list(s.exec(query.order_by(col(PatientLinkRow.id))).all())

    def referrals_of_patient(self, patient_id: str) -> list[ReferralRow]:
        """Referrals that belong to this patient, or whose trust record names them."""
        with self.session() as s:
            query = select(ReferralRow).where(
                or_(
                    ReferralRow.patient_id == patient_id,
                    ReferralRow.natural_patient_id == patient_id,
                )
            )
            return list(s.exec(query.order_by(col(ReferralRow.first_pulled_at))).all())

    def link_patients(self, keep: str, other: str, *, actor: str, reason: str) -> list[str]:
        """Make ``other`` the same person as ``keep``; returns the referrals moved.

        Raises:
            TerminalError: either patient is unknown (code ``not_found``).
            ConflictError: the link is impossible (same patient, already linked, a cycle).
        """
        with self.session() as s:
            kept, gone = _require(s, keep), _require(s, other)
            _check_link(s, kept, gone)
            gone.merged_into, gone.active, gone.updated_at = keep, False, utcnow()
            s.add(gone)
            self._add_link(s, kept.connection, keep, other, "operator_link", actor, reason)
            moved = self._move_referrals(s, other, lambda _row: keep)
            self._redecorate(s, keep)
            self._redecorate(s, other)
            self._refresh_hashes(s, moved)
            self._audit_link(s, "patient.link", actor, reason, keep, other, moved)
            return moved

    def unlink_patient(self, other: str, *, actor: str, reason: str) -> list[str]:
        """Undo an operator link of ``other``; returns the referrals given back to it.

        Raises:
            TerminalError: the patient is unknown (code ``not_found``).
            ConflictError: the patient is not linked by an operator.
        """
        with self.session() as s:
            gone = _require(s, other)
            keep = gone.merged_into
            if keep is None:
                raise ConflictError("this patient is not linked to another (nothing to unlink)")
            gone.merged_into, gone.active, gone.updated_at = None, True, utcnow()
            s.add(gone)
            s.flush()
            for link in _open_operator_links(s, keep, other):
                link.ended_at = utcnow()
                s.add(link)
            self._add_link(s, gone.connection, keep, other, "operator_unlink", actor, reason)
            moved = self._move_referrals(s, keep, lambda row: follow_links(s, natural_of(row)))
            self._redecorate(s, keep)
            self._redecorate(s, other)
            self._refresh_hashes(s, moved)
            self._audit_link(s, "patient.unlink", actor, reason, keep, other, moved)
            return moved

    def _store_patient(
        self, s: Session, connection: str, patient: JsonDict, natural_id: str
    ) -> JsonDict:
        """Store the Patient the record names; return the one the referral is delivered with.

        When an operator linked the named patient to another, the record's details are kept
        under the named patient (marked replaced-by), and the kept patient is left as it is.
        """
        if natural_id == patient["id"]:
            decorated = decorate(s, patient)
            self._put_resource(s, connection, None, decorated)
            return decorated
        self._put_resource(s, connection, None, decorate(s, {**patient, "id": natural_id}))
        return self._get_resource(s, "Patient", patient["id"]) or patient

    def _redecorate(self, s: Session, patient_id: str) -> None:
        """Redraw a stored Patient's merge links after its identity history changed."""
        stored = self._get_resource(s, "Patient", patient_id)
        if stored is not None:
            row = s.get(PatientRow, patient_id)
            connection = row.connection if row else ""
            self._put_resource(s, connection, None, decorate(s, stored))

    def _move_referrals(
        self, s: Session, current: str, target: Callable[[ReferralRow], str]
    ) -> list[str]:
        """Point referrals now on ``current`` at their target patient; they are redelivered."""
        from ehr_bridge.domain.referral import with_subject  # the FHIR model, when needed

        moved = []
        query = select(ReferralRow).where(ReferralRow.patient_id == current)
        for row in s.exec(query.order_by(col(ReferralRow.id))).all():
            new = target(row)
            if new == current:
                continue
            request = self._get_resource(s, "ServiceRequest", row.id)
            if request is not None:
                self._put_resource(s, row.connection, row.id, with_subject(request, new))
            row.patient_id = new
            s.add(row)
            moved.append(row.id)
        return moved

    @staticmethod
    def _add_link(
        s: Session, connection: str, keep: str, other: str, kind: str, actor: str, reason: str
    ) -> None:
        s.add(
            PatientLinkRow(
                connection=connection,
                patient_id=keep,
                other_patient_id=other,
                kind=kind,
                reason=reason,
                actor=actor,
            )
        )

    @staticmethod
    def _audit_link(
        s: Session, action: str, actor: str, reason: str, keep: str, other: str, moved: list[str]
    ) -> None:
        detail = {"kept": keep, "other": other, "referrals": moved}
        add_audit(s, AuditEntry(action, actor, reason, patient_id=other, detail=detail))


def _require(s: Session, patient_id: str) -> PatientRow:
    row = s.get(PatientRow, patient_id)
    if row is None:
        raise TerminalError("no patient with this id", code="not_found")
    return row


def _check_link(s: Session, kept: PatientRow, gone: PatientRow) -> None:
    if kept.id == gone.id:
        raise ConflictError("a patient cannot be linked to itself")
    if gone.merged_into:
        raise ConflictError("the second patient is already linked; unlink it first")
    if kept.merged_into:
        raise ConflictError("the first patient is itself linked to another; link to that one")


def _open_operator_links(s: Session, keep: str, other: str) -> list[PatientLinkRow]:
    query = select(PatientLinkRow).where(
        PatientLinkRow.kind == "operator_link",
        PatientLinkRow.patient_id == keep,
        PatientLinkRow.other_patient_id == other,
        col(PatientLinkRow.ended_at).is_(None),
    )
    return list(s.exec(query).all())
