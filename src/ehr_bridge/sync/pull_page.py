"""One pull page's records: skip the unchanged, check the addressee, map, build, settle.

Every record of a page ends up stored, unchanged, quarantined or left alone on purpose
(another provider's, a cancel for a referral never held), and is counted in ``PullCounts``.
What a record *means* (the hash of the FHIR built from it) decides between a real change,
a resend, a reused version marker and an echo of our own write-back (``_settle``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ehr_bridge.domain.codes import NHS_NUMBER_SYSTEM
from ehr_bridge.domain.facts import ReferralFacts
from ehr_bridge.domain.nhs_number import check_nhs_number
from ehr_bridge.domain.referral import (
    STATUS_AFTER_OUR_EVENT,
    ReferralResources,
    build_referral_resources,
)
from ehr_bridge.errors import EhrBridgeError, RecordError
from ehr_bridge.store import (
    AuditEntry,
    NewQuarantine,
    PageState,
    PatientMatch,
    PulledReferral,
    Restamp,
    Store,
    Stored,
    content_hash,
    engine_actor,
)
from ehr_bridge.sync.connection import Connection

log = logging.getLogger("ehr_bridge.sync.pull")


@dataclass
class PullCounts:
    """What one pull did."""

    seen: int = 0
    stored: int = 0
    unchanged: int = 0
    quarantined: int = 0
    pages: int = 0
    identity_changes: int = 0
    #: referrals addressed to another provider: left alone, never stored
    skipped_not_ours: int = 0
    #: cancellations of referrals we never held: nothing to cancel, nothing stored
    skipped_unknown_cancels: int = 0
    #: changes that only reflect our own write-backs: versioned, not delivered again
    echoes: int = 0
    #: earlier copies of a record that one page held more than once (the last one counts)
    collapsed: int = 0


@dataclass
class _Candidate:
    """A changed record of the page on its way to the store."""

    record: Any
    ref: str
    source_hash: str
    facts: ReferralFacts | None = None
    match: PatientMatch | None = None
    resources: ReferralResources | None = None
    #: the trust's id holds characters no database column takes (NUL, controls)
    bad_id: bool = False
    #: where the record holds a value larger than any field may be (see ``_oversized``)
    oversized: str | None = None


class PageWork:
    """One page's records: skip the unchanged, map, match patients, build, or quarantine.

    The stored state (hashes, open quarantine, patients) is read once per page, in a few
    queries, instead of once per record: this is the pull's hot path.
    """

    def __init__(self, conn: Connection, store: Store, counts: PullCounts) -> None:
        self.conn, self.store, self.counts = conn, store, counts
        self.referrals: list[PulledReferral] = []
        self.quarantines: list[NewQuarantine] = []
        self.restamps: list[Restamp] = []
        self.audits: list[AuditEntry] = []
        #: trust referral ids of this page that the store holds already
        self.known: set[str] = set()
        self.state = PageState({}, set())
        #: the ledger as this page leaves it so far: a later message of the same page
        #: is compared with an earlier one, not only with what was stored before
        self.current: dict[str, Stored] = {}

    def take(self, records: list[Any]) -> None:
        """Every record of the page ends up stored, unchanged or quarantined (counted)."""
        self.counts.seen += len(records)
        candidates = self._changed(records)
        mapped = [
            c for c in candidates if self._guarded(c, self._map) and not self._unknown_cancel(c)
        ]
        test = self.conn.test_connection
        keys = [
            (_canonical(c.facts.patient.nhs_number, test), c.facts.patient.local_id)
            for c in mapped
            if c.facts
        ]
        matches = self.store.resolve_patients(self.conn.name, keys) if keys else []
        built = []
        for candidate, match in zip(mapped, matches, strict=True):
            candidate.match = match
            if self._guarded(candidate, self._build):
                built.append(candidate)
        self._settle(built)

    def _changed(self, records: list[Any]) -> list[_Candidate]:
        mapping = self.conn.mapping
        candidates = []
        for record in records:
            oversized = _oversized(record)
            if oversized is not None:  # refused before any copy of it is made
                record = _trimmed(record)
            source_hash = content_hash(record)
            trust_id = mapping.record_id(record) if isinstance(record, dict) else None
            storable = trust_id is None or _storable(trust_id)
            ref = (trust_id if storable else None) or f"sha256:{source_hash[:16]}"
            candidate = _Candidate(record, ref, source_hash, bad_id=not storable)
            candidate.oversized = oversized
            candidates.append(candidate)
        state = self.store.pull_page_state(self.conn.name, [c.ref for c in candidates])
        self.state = state
        self.current = dict(state.current)
        self.known = set(state.source_hashes)
        fresh, seen = [], set()
        for candidate in candidates:
            key = (candidate.ref, candidate.source_hash)
            if key in seen or state.unchanged(*key):
                self.counts.unchanged += 1
                continue
            if not self._addressed_to_us(candidate, known=candidate.ref in state.source_hashes):
                continue
            seen.add(key)
            fresh.append(candidate)
        return self._collapsed(fresh)

    def _collapsed(self, fresh: list[_Candidate]) -> list[_Candidate]:
        """One version per trust record and page: the page's last version of it, with a note.

        A page that holds one record many times (a flood, or a trust that lists every
        version) would otherwise store a version per copy. The page is in change order,
        so its last version marker is the record as the trust holds it now; copies under
        earlier markers are counted and noted for support staff (ids and counts only, no
        record contents). Copies under that same last marker all go on: ``_settle`` tells
        a resend (same meaning) from a reused id (other content), as against the store.
        """
        by_ref: dict[str, list[_Candidate]] = {}
        for candidate in fresh:
            by_ref.setdefault(candidate.ref, []).append(candidate)
        kept: set[int] = set()
        for ref, copies in by_ref.items():
            latest = self._latest_version(copies)
            if len(latest) < len(copies):
                versions = len({self._version(c) for c in copies[: -len(latest)]}) + 1
                self.counts.collapsed += len(copies) - len(latest)
                self.quarantines.append(_duplicate_note(ref, versions))
            kept.update(id(c) for c in latest)
        return [c for c in fresh if id(c) in kept]

    def _latest_version(self, copies: list[_Candidate]) -> list[_Candidate]:
        """The trailing copies that share the last copy's version marker (each, if none)."""
        marker = self._version(copies[-1])
        if marker is None:
            return copies[-1:]
        tail: list[_Candidate] = []
        for candidate in reversed(copies):
            if self._version(candidate) != marker:
                break
            tail.append(candidate)
        return tail[::-1]

    def _version(self, candidate: _Candidate) -> str | None:
        record = candidate.record
        return self.conn.mapping.record_version(record) if isinstance(record, dict) else None

    def _addressed_to_us(self, candidate: _Candidate, *, known: bool) -> bool:
        """False for a referral another provider was sent: it is left alone, never stored.

        A feed may carry every onward referral of the service; taking one addressed
        elsewhere would hand a patient's details to a provider they were never referred
        to. A referral we hold already and that is now addressed elsewhere is quarantined
        instead (``readdressed``), so support staff see it and tell the provider. A record
        whose addressee cannot be read goes on to the mapping, whose required rule then
        quarantines it naming the field.
        """
        record = candidate.record
        addressee = self.conn.mapping.addressee(record) if isinstance(record, dict) else None
        if addressee is None or _is_our_code(self.conn, addressee):
            return True
        if known:
            error = RecordError(
                "referral is now addressed to another provider",
                field="referred_on_to",
                record=candidate.ref,
                code="readdressed",
            )
            self._quarantine(candidate, error)
            return False
        self.counts.skipped_not_ours += 1
        log.debug("referral for another provider left alone", extra={"connection": self.conn.name})
        return False

    def _unknown_cancel(self, candidate: _Candidate) -> bool:
        """True for a cancellation of a referral we never held: it is not stored or delivered.

        Storing it would deliver a revoked referral, with the patient's details, to a
        provider that never had the patient (a trust may cancel before we saw the
        referral, or cancel one addressed elsewhere).
        """
        facts = candidate.facts
        if facts is None or facts.status != "revoked" or candidate.ref in self.known:
            self.known.add(candidate.ref)  # a cancel later in this page has its referral
            return False
        self.counts.skipped_unknown_cancels += 1
        self.audits.append(
            AuditEntry(
                action="pull.unknown_cancel",
                actor=engine_actor("pull"),
                reason="cancellation of a referral never held: not stored, not delivered",
                connection=self.conn.name,
                detail={"trust_referral_id": candidate.ref},
            )
        )
        log.debug(
            "cancellation of an unknown referral left alone", extra={"connection": self.conn.name}
        )
        return True

    def _map(self, candidate: _Candidate) -> None:
        record = candidate.record
        if not isinstance(record, dict):
            raise RecordError(
                "record is not a JSON object", field="(record)", record=candidate.ref, code="shape"
            )
        _refuse_unreadable(record, candidate.ref)
        if candidate.oversized is not None:
            raise RecordError(
                f"larger than any field may be ({MAX_FIELD_CHARS:,} characters or"
                f" {MAX_LIST_ITEMS:,} items), or not valid text (bytes that were not UTF-8)",
                field=candidate.oversized,
                record=candidate.ref,
                code="unfit_value",
            )
        if candidate.bad_id:
            raise RecordError(
                "the trust's record id holds control characters",
                field="id",
                record=candidate.ref,
                code="control_characters",
            )
        facts = self.conn.mapping.referral_facts(candidate.record)
        _refuse_unstorable(facts, candidate.ref)
        candidate.facts = facts

    def _build(self, candidate: _Candidate) -> None:
        facts, match = candidate.facts, candidate.match
        assert facts is not None and match is not None  # mapped and matched before built
        conn = self.conn
        candidate.resources = build_referral_resources(
            conn.name,
            conn.provider_ref,
            facts,
            patient_id=match.effective_id,
            allow_test_range=conn.test_connection,
            other_uk_numbers=conn.other_uk_numbers,
        )

    def _settle(self, built: list[_Candidate]) -> None:
        """Each built referral is a real change, a resend, a reused id, or our own echo.

        The raw record of a resend differs (new MSH-7 and MSH-10, other line endings, a
        trust's version bump); what it means does not. So a record is compared by the hash
        of the FHIR it builds, and only a change in meaning makes a version and a delivery.
        """
        landed = self._landed_events(built)
        for candidate in built:
            facts, resources = candidate.facts, candidate.resources
            assert facts is not None and resources is not None  # built before settled
            meaning = content_hash([resources.patient, resources.service_request])
            stored = self.current.get(candidate.ref)
            if stored is not None and stored.meaning_hash == meaning:
                self.restamps.append(
                    Restamp(facts.trust_referral_id, candidate.source_hash, facts.source_version)
                )
                self.counts.unchanged += 1
            elif stored is not None and _reused_version(stored, facts):
                self._quarantine(candidate, self._reused_version_error(candidate))
            else:
                echo = stored is not None and _is_echo(stored, resources, landed)
                self._keep(candidate, meaning, echo=echo)
                self.current[candidate.ref] = _as_stored(resources, facts, meaning, stored)

    def _landed_events(self, built: list[_Candidate]) -> set[tuple[str, str]]:
        """Our status write-backs that reached the trust, for referrals whose status moved."""
        moved = []
        for candidate in built:
            stored = self.current.get(candidate.ref)
            resources = candidate.resources
            status = resources.service_request["status"] if resources else None
            if stored is not None and status is not None and status != stored.status:
                moved.append(stored.referral_id)
        if not moved:
            return set()
        events = list(STATUS_AFTER_OUR_EVENT)
        return self.store.landed_status_events(self.conn.name, moved, events)

    def _reused_version_error(self, candidate: _Candidate) -> RecordError:
        label = self.conn.mapping.version_field or "source_version"
        return RecordError(
            f"{label} was seen before with different content; the earlier version is kept"
            " (one message id, one meaning)",
            field=label,
            record=candidate.ref,
            code="version_reused",
        )

    def _keep(self, candidate: _Candidate, meaning: str, *, echo: bool) -> None:
        facts, match, resources = candidate.facts, candidate.match, candidate.resources
        assert facts is not None and match is not None and resources is not None
        natural = match.natural_id if match.natural_id != match.effective_id else None
        self.referrals.append(
            PulledReferral(
                trust_referral_id=facts.trust_referral_id,
                source_hash=candidate.source_hash,
                source_version=facts.source_version,
                status=facts.status,
                patient_local_id=facts.patient.local_id,
                nhs_number=_nhs_number(resources.patient),
                patient=resources.patient,
                service_request=resources.service_request,
                natural_patient_id=natural,
                meaning_hash=meaning,
                echo=echo,
            )
        )
        if echo:
            self.counts.echoes += 1
        else:
            self.counts.stored += 1

    def _guarded(self, candidate: _Candidate, step: Callable[[_Candidate], None]) -> bool:
        """Run one step; a record error quarantines the record (False), others propagate."""
        try:
            step(candidate)
            return True
        except RecordError as exc:
            error = exc
        except (EhrBridgeError, SQLAlchemyError, OSError):
            raise  # infrastructure, not the record: the page must not commit
        except Exception as exc:  # a shape nobody foresaw: quarantine it, keep the page going
            error = _unexpected(exc, candidate.ref)
        self._quarantine(candidate, error)
        return False

    def _quarantine(self, candidate: _Candidate, error: RecordError) -> None:
        record = candidate.record
        self.counts.quarantined += 1
        self.quarantines.append(
            NewQuarantine(
                source="referral",
                record_ref=candidate.ref,
                code=error.code,
                reason=error.safe_message,
                field=error.field,
                payload=record if isinstance(record, dict) else {"record": record},
            )
        )
        log.warning(
            "referral quarantined",
            extra={"connection": self.conn.name, "code": error.code, "field": error.field},
        )


#: what no text column takes (PostgreSQL refuses NUL outright) and no identifier holds
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


#: the longest text and the longest list a referral record may hold in one field; a
#: referral's largest real field (an address, a referral reason) is a few hundred
#: characters, and one 9.5 MB name otherwise costs over a gigabyte on its way through
MAX_FIELD_CHARS = 65_536
MAX_LIST_ITEMS = 10_000
_TRIMMED = "(refused: too large or not text)"


def _oversized(record: Any) -> str | None:
    """The path of the first value unfit for any field (``patient.family_name``), if any.

    Unfit: text or a list larger than any field may be, or text that is not text (a
    replacement character or a lone surrogate: bytes the trust sent were not UTF-8 and
    were replaced on decoding; storing them would keep a corrupted name as if it were
    the patient's).
    """
    stack: list[tuple[Any, str]] = [(record, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if len(value) > MAX_FIELD_CHARS or not _is_text(value):
                return path or "(record)"
        elif isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in value.items())
        elif isinstance(value, list):
            if len(value) > MAX_LIST_ITEMS:
                return path or "(record)"
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(value))
    return None


def _is_text(value: str) -> bool:
    if value.isascii():
        return True
    if "\ufffd" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _trimmed(value: Any) -> Any:
    """``value`` with every unfit text or list replaced by a marker (what quarantine keeps)."""
    if isinstance(value, str):
        return _TRIMMED if len(value) > MAX_FIELD_CHARS or not _is_text(value) else value
    if isinstance(value, dict):
        return {k: _trimmed(v) for k, v in value.items()}
    if isinstance(value, list):
        return _TRIMMED if len(value) > MAX_LIST_ITEMS else [_trimmed(v) for v in value]
    return value


def _storable(text: str) -> bool:
    return _CONTROL.search(text) is None


def _refuse_unstorable(facts: ReferralFacts, ref: str) -> None:
    """Identifiers go into plain columns (ledger, patients): none may hold a control character.

    PostgreSQL refuses a NUL in text, which would abort the whole page's transaction: the
    record is quarantined here instead, naming the field, and the page goes on.
    """
    fields = {
        "trust_referral_id": facts.trust_referral_id,
        "source_version": facts.source_version,
        "patient.local_id": facts.patient.local_id,
        "patient.nhs_number": facts.patient.nhs_number,
    }
    for name, value in fields.items():
        if value is not None and not _storable(value):
            raise RecordError(
                "holds control characters", field=name, record=ref, code="control_characters"
            )


def _duplicate_note(ref: str, count: int) -> NewQuarantine:
    """The note support staff see when one page held a record more than once."""
    return NewQuarantine(
        source="referral",
        record_ref=ref,
        code="duplicate_in_page",
        reason=f"{count} different versions of this record in one page: the last was kept",
        field="(record)",
        payload={"record_ref": ref, "versions_in_page": count},
    )


def _as_stored(
    resources: ReferralResources, facts: ReferralFacts, meaning: str, before: Stored | None
) -> Stored:
    """The ledger entry a kept referral leaves, for the rest of its page to compare with."""
    request = resources.service_request
    return Stored(
        referral_id=str(request["id"]),
        source_version=facts.source_version,
        status=str(request["status"]),
        fhir_hash="",  # not known until saved: a later echo in this page is not settled
        delivered_hash=before.delivered_hash if before else None,
        meaning_hash=meaning,
    )


def _reused_version(stored: Stored, facts: ReferralFacts) -> bool:
    """True when the trust sent different content under the version marker it used before."""
    return (
        stored.meaning_hash is not None
        and facts.source_version is not None
        and facts.source_version == stored.source_version
    )


def _is_echo(stored: Stored, resources: ReferralResources, landed: set[tuple[str, str]]) -> bool:
    """True when the only change is the status one of our own write-backs set.

    Only while the provider holds the stored version: the new FHIR is then exactly what
    the provider had, plus what it wrote back itself. A change by the trust's own staff
    (any other field, or a status we did not write) is delivered as usual.
    """
    if stored.meaning_hash is None or stored.delivered_hash != stored.fhir_hash:
        return False
    request = resources.service_request
    status = request["status"]
    if status == stored.status:
        return False
    ours = any(
        (stored.referral_id, event) in landed and after == status
        for event, after in STATUS_AFTER_OUR_EVENT.items()
    )
    before = content_hash([resources.patient, {**request, "status": stored.status}])
    return ours and before == stored.meaning_hash


def _refuse_unreadable(record: dict[str, Any], ref: str) -> None:
    """A record the adapter could not read stops here, naming the field the adapter names.

    Adapters hand over what they could not read instead of dropping it (``unreadable``: a
    value-free reason; ``unreadable_field``: where, e.g. ``MSH-18`` or ``line 4``), so it is
    quarantined rather than mapped into a made-up referral or silently lost.
    """
    reason = record.get("unreadable")
    if not reason:
        return
    where = record.get("unreadable_field")
    raise RecordError(
        f"record unreadable: {reason}",
        field=where if isinstance(where, str) and where else "(record)",
        record=ref,
        code="unreadable",
    )


def _is_our_code(conn: Connection, addressee: str) -> bool:
    """True when a referral's addressee is this connection's provider (code or ODS code)."""
    ours = {conn.provider_ref.code, conn.provider_ref.ods_code}
    wanted = addressee.strip().upper()
    return any(code is not None and code.strip().upper() == wanted for code in ours)


def _unexpected(exc: Exception, ref: str) -> RecordError:
    """A bug or a shape nobody foresaw: named by type only, as its text may hold data."""
    return RecordError(f"unexpected {type(exc).__name__}", record=ref, code="internal_error")


def _canonical(nhs_number: str | None, test_connection: bool) -> str | None:
    """The stored form of an NHS number, to look the patient up (None if it is not valid).

    The same policy as the build: a number the build would refuse (or, for another UK
    scheme, drop) never matches a stored patient.
    """
    if nhs_number is None:
        return None
    try:
        return check_nhs_number(nhs_number, allow_test_range=test_connection)
    except RecordError:
        return None


def _nhs_number(patient: dict[str, Any]) -> str | None:
    for identifier in patient.get("identifier", []):
        if identifier.get("system") == NHS_NUMBER_SYSTEM:
            return str(identifier["value"])
    return None
