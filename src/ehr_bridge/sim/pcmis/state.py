"""The simulated PC-MIS-style record system: referrals, write-backs, numbered pages.

One lock guards everything, as the threaded server calls in from many request threads.
``LastModified`` comes from the simulators' monotonic clock (``sim.records``: each change
at least a millisecond after the last), so a client's closed-start cursor never misses one.

The listing is numbered pages over (LastModified, ReferralRef) with a total count, as
legacy record systems tend to page. Numbered pages over a changing order have a known
hazard: a record changed mid-walk moves to the end and every record after it shifts one
place up, so a client asking for "page 2" skips one. The simulator keeps that behaviour on
purpose, so the adapter's ``requery_from_last_change`` option can be shown to avoid it.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ehr_bridge.errors import ConflictError, RecordValidationError, TerminalError
from ehr_bridge.sim.generator import generate
from ehr_bridge.sim.pcmis import hostile
from ehr_bridge.sim.pcmis.records import (
    APPOINTMENT,
    ID_FIELDS,
    KINDS,
    NOTE,
    QUESTIONNAIRE,
    RISK_ALERT,
    STATUS_CHANGE,
    JsonDict,
    format_modified,
    to_pcmis,
)
from ehr_bridge.sim.pcmis.validation import VALIDATORS, acknowledger
from ehr_bridge.sim.records import REFERENCE_NOW, Clock, MonotonicClock, parse_timestamp, utc_now

#: largest page the listing serves
MAX_PAGE_SIZE = 200


#: kinds a client may overwrite with PUT (status changes and risk alerts stand as made)
UPDATABLE = frozenset({APPOINTMENT, NOTE, QUESTIONNAIRE})


class UnknownReferralError(TerminalError):
    """No referral has this reference (the HTTP layer answers 404)."""

    code = "not_found"


class UnknownItemError(TerminalError):
    """The referral has no item of this kind with this id (the HTTP layer answers 404)."""

    code = "not_found"


@dataclass
class _Referral:
    reference: str
    record: JsonDict
    modified: datetime
    items: dict[str, list[JsonDict]] = field(default_factory=lambda: {k: [] for k in KINDS})


@dataclass(frozen=True)
class Page:
    """One numbered page of the listing."""

    records: list[JsonDict]
    number: int
    size: int
    total_records: int

    @property
    def total_pages(self) -> int:
        """Pages in the whole listing (at least 1, so page 1 always exists)."""
        return max(1, math.ceil(self.total_records / self.size))


class PcmisState:
    """Everything the simulated PC-MIS-style system holds, behind one lock.

    Attributes:
        hostile_fields: referral reference -> the mapping target its defect should be
            quarantined under.
    """

    def __init__(
        self,
        *,
        seed: int,
        referrals: int,
        hostile_count: int = 0,
        provider_code: str = "IESO01",
        now: datetime = REFERENCE_NOW,
        clock: Clock = utc_now,
    ) -> None:
        dataset = generate(seed=seed, referrals=referrals, provider_code=provider_code, now=now)
        self._lock = threading.RLock()
        self._referrals: dict[str, _Referral] = {}
        for index, record in enumerate(dataset.referrals, start=1):
            self._add(record, f"PCM-{index:06d}")
        self.hostile_fields: dict[str, str] = {}
        self._unbroken: dict[str, JsonDict] = {}  # a hostile record before it was broken
        for index in range(hostile_count):
            factory = dataset.factory
            assert factory is not None
            ref = self._add(factory.referral(provider_code), f"PCM-X{index + 1:05d}")
            self._unbroken[ref.reference] = copy.deepcopy(ref.record)
            self.hostile_fields[ref.reference] = hostile.break_record(ref.record, index)
        floor = max((r.modified for r in self._referrals.values()), default=now)
        self._clock = MonotonicClock(clock, floor)
        self._counters = dict.fromkeys(KINDS, 0)
        self.meta: JsonDict = {"seed": seed, "provider_code": provider_code}

    def _add(self, record: JsonDict, reference: str) -> _Referral:
        modified = parse_timestamp(record["updated_at"])
        ref = _Referral(reference, to_pcmis(record, reference, modified), modified)
        self._referrals[reference] = ref
        return ref

    def list_referrals(
        self,
        *,
        service: str | None,
        modified_since: datetime | None,
        page_number: int,
        page_size: int,
    ) -> Page:
        """One numbered page, ordered by (LastModified, ReferralRef).

        Raises:
            RecordValidationError: page number or size out of range (field named).
        """
        if page_number < 1:
            raise RecordValidationError("must be 1 or more", field="pageNumber")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise RecordValidationError(f"must be 1..{MAX_PAGE_SIZE}", field="pageSize")
        with self._lock:
            chosen = sorted(
                (r for r in self._referrals.values() if _matches(r, service, modified_since)),
                key=lambda r: (r.modified, r.reference),
            )
            start = (page_number - 1) * page_size
            records = [copy.deepcopy(r.record) for r in chosen[start : start + page_size]]
        return Page(records, page_number, page_size, len(chosen))

    def get_referral(self, reference: str) -> JsonDict:
        """One referral.

        Raises:
            UnknownReferralError: no referral has this reference.
        """
        with self._lock:
            return copy.deepcopy(self._require(reference).record)

    def create_item(self, reference: str, kind: str, body: object) -> JsonDict:
        """Validate and store one write; a status change also changes the referral.

        Raises:
            UnknownReferralError: no referral has this reference.
            RecordValidationError: the body breaks a rule (field named).
            ConflictError: this kind already has an item with the ExternalRef.
        """
        with self._lock:
            ref = self._require(reference)
            appointments = [item["AppointmentId"] for item in ref.items["appointment"]]
            clean = VALIDATORS[kind](body, appointments)
            _refuse_duplicate(ref, kind, clean["ExternalRef"])
            if kind == STATUS_CHANGE:
                _apply_status(ref, clean)
                self._touch(ref)
            if kind == RISK_ALERT:  # the duty worker's part: this system sets it
                clean.update(Status="OPEN", AcknowledgedAt=None, AcknowledgedBy=None)
            self._counters[kind] += 1
            item = {ID_FIELDS[kind]: self._counters[kind], "ReferralRef": reference, **clean}
            ref.items[kind].append(item)
            return copy.deepcopy(item)

    def list_items(self, reference: str, kind: str, external_ref: str | None) -> list[JsonDict]:
        """A referral's items of one kind, optionally only the one with ``external_ref``.

        Raises:
            UnknownReferralError: no referral has this reference.
        """
        with self._lock:
            items = self._require(reference).items[kind]
            return copy.deepcopy([i for i in items if external_ref in (None, i["ExternalRef"])])

    def update_item(self, reference: str, kind: str, item_id: int, body: object) -> JsonDict:
        """The API's PUT: replace an item with a checked body carrying its own ExternalRef.

        Raises:
            UnknownReferralError: no referral has this reference.
            UnknownItemError: the referral has no such item, or the kind cannot be updated.
            RecordValidationError: the body breaks a rule, or names another ExternalRef.
        """
        with self._lock:
            ref = self._require(reference)
            item = _find_item(ref, kind, item_id)
            if kind not in UPDATABLE:
                raise UnknownItemError("items of this kind cannot be updated")
            appointments = [a["AppointmentId"] for a in ref.items[APPOINTMENT] if a is not item]
            clean = VALIDATORS[kind](body, appointments)
            if clean["ExternalRef"] != item["ExternalRef"]:
                raise RecordValidationError(
                    "must be the item's own ExternalRef", field="ExternalRef"
                )
            item.update(clean)
            return copy.deepcopy(item)

    # --- trust-side actions (people at the trust, on screen; not in the API) ----------
    def edit_item(
        self, reference: str, kind: str, item_id: int, changes: Mapping[str, object]
    ) -> JsonDict:
        """Simulate a clinician editing a written item (top-level fields, not its ids).

        Raises:
            UnknownReferralError: no referral has this reference.
            UnknownItemError: the referral has no such item.
            RecordValidationError: ``changes`` is not an object, or would change an id.
        """
        if not isinstance(changes, Mapping):
            raise RecordValidationError("must be an object of fields", field="changes")
        fixed = sorted({ID_FIELDS[kind], "ReferralRef"} & set(changes))
        if fixed:
            raise RecordValidationError("an item's ids cannot be edited", field=fixed[0])
        with self._lock:
            item = _find_item(self._require(reference), kind, item_id)
            item.update(copy.deepcopy(dict(changes)))
            return copy.deepcopy(item)

    def delete_item(self, reference: str, kind: str, item_id: int) -> JsonDict:
        """Simulate a clinician deleting a written item; returns what was deleted.

        Raises:
            UnknownReferralError: no referral has this reference.
            UnknownItemError: the referral has no such item.
        """
        with self._lock:
            ref = self._require(reference)
            item = _find_item(ref, kind, item_id)
            ref.items[kind].remove(item)
            return copy.deepcopy(item)

    def fix_hostile(self, reference: str) -> JsonDict:
        """Simulate someone at the trust correcting a malformed referral's broken field.

        The record gets its well-formed content back and a new revision, so it moves to the
        end of the listing and stops being hostile.

        Raises:
            UnknownReferralError: no referral has this reference.
            RecordValidationError: the referral is not a malformed one.
        """
        with self._lock:
            ref = self._require(reference)
            unbroken = self._unbroken.pop(reference, None)
            if unbroken is None:
                raise RecordValidationError("not a malformed referral", field="ReferralRef")
            unbroken["Revision"] = ref.record["Revision"]
            ref.record = unbroken
            del self.hostile_fields[reference]
            self._touch(ref)
            return copy.deepcopy(ref.record)

    def acknowledge_risk_alert(
        self, reference: str, alert_id: int, by: str, *, close: bool = False
    ) -> JsonDict:
        """Simulate the duty worker acknowledging (and with ``close``, closing) a risk alert.

        This system has no API for it (its users do it on screen); tests and the demo call
        this. ``AcknowledgedAt`` is now, in UK local time with its offset, and stays the
        first one when the alert is acknowledged again or closed later.

        Raises:
            UnknownReferralError: no referral has this reference.
            RecordValidationError: no such alert, or ``by`` is not a user id.
        """
        user = acknowledger(by)
        with self._lock:
            ref = self._require(reference)
            found = [a for a in ref.items[RISK_ALERT] if a["RiskAlertId"] == alert_id]
            if not found:
                raise RecordValidationError("no such risk alert", field="RiskAlertId")
            alert = found[0]
            if alert["Status"] == "OPEN":
                alert["AcknowledgedAt"] = format_modified(self._clock.tick())
                alert["AcknowledgedBy"] = user
                alert["Status"] = "ACKNOWLEDGED"
            if close:
                alert["Status"] = "CLOSED"
            return copy.deepcopy(alert)

    def update_referral(self, reference: str, changes: Mapping[str, object]) -> JsonDict:
        """Simulate a clinician editing a referral (top-level fields); it moves to the end.

        Raises:
            UnknownReferralError: no referral has this reference.
        """
        with self._lock:
            ref = self._require(reference)
            ref.record.update(copy.deepcopy(dict(changes)))
            self._touch(ref)
            return copy.deepcopy(ref.record)

    def export(self) -> JsonDict:
        """Every referral with its items, in creation order, for tests and the demo."""
        with self._lock:
            entries = [
                {"referral": r.record, **{k: r.items[k] for k in KINDS}}
                for r in self._referrals.values()
            ]
            body = {**self.meta, "referrals": entries, "hostile": self.hostile_fields}
            return copy.deepcopy(body)

    def _require(self, reference: str) -> _Referral:
        ref = self._referrals.get(reference)
        if ref is None:
            raise UnknownReferralError("no referral with this reference")
        return ref

    def _touch(self, ref: _Referral) -> None:
        ref.modified = self._clock.tick()
        ref.record["Revision"] += 1
        ref.record["LastModified"] = format_modified(ref.modified)


def _matches(ref: _Referral, service: str | None, since: datetime | None) -> bool:
    if service is not None and ref.record.get("Onward", {}).get("ServiceCode") != service:
        return False
    return since is None or ref.modified >= since


def _find_item(ref: _Referral, kind: str, item_id: int) -> JsonDict:
    for item in ref.items[kind]:
        if item[ID_FIELDS[kind]] == item_id:
            return item
    raise UnknownItemError("no item with this id on this referral")


def _refuse_duplicate(ref: _Referral, kind: str, external_ref: str) -> None:
    for item in ref.items[kind]:
        if item["ExternalRef"] == external_ref:
            raise ConflictError(
                "ExternalRef already used for this kind on this referral",
                existing_id=str(item[ID_FIELDS[kind]]),
            )


def _apply_status(ref: _Referral, change: JsonDict) -> None:
    if ref.record["Status"] == "DIS":
        raise RecordValidationError("referral is already discharged", field="Status")
    ref.record["Status"] = change["Status"]
    if change["Status"] == "DIS":
        ref.record["Discharge"] = {
            "Date": change["EffectiveDate"],
            "Reason": change["DischargeReason"],
        }
