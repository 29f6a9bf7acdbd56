"""The simulated trust record system: referrals, their write-backs and a monotonic clock.

Every public method takes one lock, so the threaded HTTP server can call it from any
request thread. ``updated_at`` comes from a clock that never goes backwards and moves at
least a millisecond per change, so a client cursor with a closed start never misses a
change and never sees a change dated before data it has already read.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ehr_bridge.errors import ConflictError, RecordValidationError, TerminalError
from ehr_bridge.sim import paging
from ehr_bridge.sim.faults import FaultPlan
from ehr_bridge.sim.generator import Dataset, ReferralFactory
from ehr_bridge.sim.hostile import HostileInfo
from ehr_bridge.sim.records import (
    ARTEFACT_KINDS,
    CARE_CONTACT,
    EXPORT_KEYS,
    ID_PREFIXES,
    RISK_ALERT,
    RISK_ALERT_ACKNOWLEDGED,
    RISK_ALERT_CLOSED,
    RISK_ALERT_OPEN,
    STATUS_EVENT,
    Clock,
    JsonDict,
    MonotonicClock,
    format_timestamp,
    parse_timestamp,
    utc_now,
)
from ehr_bridge.sim.validation import VALIDATORS, acknowledgement


class UnknownReferralError(TerminalError):
    """No referral has this id (the HTTP layer answers 404)."""

    code = "not_found"


class UnknownItemError(TerminalError):
    """The referral has no item of this kind with this id (the HTTP layer answers 404)."""

    code = "not_found"


class UnknownPatientError(TerminalError):
    """No referral names a patient with this local id."""

    code = "not_found"


@dataclass
class _Referral:
    key: str
    record: JsonDict
    updated: datetime
    items: dict[str, list[JsonDict]] = field(
        default_factory=lambda: {kind: [] for kind in ARTEFACT_KINDS}
    )

    @property
    def order(self) -> tuple[datetime, str]:
        return self.updated, self.key


class TrustState:
    """Everything the simulated trust holds, behind one lock.

    Attributes:
        hostile: every hostile record by state key (its id, or a ``~no-id-...`` marker).
        meta: how the data was generated (seed, provider code, reference ``now``).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        clock: Clock = utc_now,
        factory: ReferralFactory | None = None,
        meta: JsonDict | None = None,
    ) -> None:
        self._lock = threading.RLock()
        #: the simulated system's fault switches (the control endpoint changes them)
        self.faults = FaultPlan()
        #: writes refused because the client reference was already used (a retry that wrote twice)
        self.conflicts = 0
        self._referrals: dict[str, _Referral] = {}
        for key, record in zip(dataset.keys, dataset.referrals, strict=True):
            updated = parse_timestamp(record["updated_at"])
            self._referrals[key] = _Referral(key, copy.deepcopy(record), updated)
        floor = max((ref.updated for ref in self._referrals.values()), default=utc_now())
        self._clock = MonotonicClock(clock, floor)
        self._factory = factory
        self._counters = dict.fromkeys(ARTEFACT_KINDS, 0)
        self.hostile: dict[str, HostileInfo] = {info.key: info for info in dataset.hostile}
        self.meta: JsonDict = dict(meta or {})

    @property
    def hostile_fields(self) -> dict[str, str]:
        """Referral id -> the field path its hostility breaks (records that have an id)."""
        return {i.referral_id: i.field for i in self.hostile.values() if i.referral_id}

    @property
    def hostile_unkeyed(self) -> list[HostileInfo]:
        """Hostile records without an id: they are listed but cannot be fetched or written."""
        return [info for info in self.hostile.values() if info.referral_id is None]

    def list_referrals(
        self,
        *,
        referred_on_to: str | None = None,
        updated_since: datetime | None = None,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> tuple[list[JsonDict], str | None]:
        """One page in (updated_at, id) order, and the token for the next page (or None).

        Raises:
            RecordValidationError: a bad ``page_size`` or ``page_token`` (field named).
        """
        if not 1 <= page_size <= 500:
            raise RecordValidationError("must be 1..500", field="page_size")
        fingerprint = paging.query_fingerprint(referred_on_to, updated_since)
        after = paging.decode(page_token, fingerprint) if page_token else None
        with self._lock:
            chosen = self._select(referred_on_to, updated_since, after)
            page = chosen[:page_size]
            records = [copy.deepcopy(ref.record) for ref in page]
        if len(chosen) <= page_size:
            return records, None
        last = page[-1]
        return records, paging.encode(paging.Position(last.updated, last.key), fingerprint)

    def _select(
        self,
        referred_on_to: str | None,
        updated_since: datetime | None,
        after: paging.Position | None,
    ) -> list[_Referral]:
        matches = [
            ref
            for ref in self._referrals.values()
            if _matches(ref, referred_on_to, updated_since, after)
        ]
        return sorted(matches, key=lambda ref: ref.order)

    def get_referral(self, referral_id: str) -> JsonDict:
        """One referral as the API serves it.

        Raises:
            UnknownReferralError: no referral has this id.
        """
        with self._lock:
            return copy.deepcopy(self._require(referral_id).record)

    def create_item(self, referral_id: str, kind: str, body: object) -> JsonDict:
        """Validate and store one write; a status event also changes the referral.

        Raises:
            UnknownReferralError: no referral has this id.
            RecordValidationError: the body breaks a rule (field named).
            ConflictError: this kind already has an item with the client reference.
        """
        with self._lock:
            ref = self._require(referral_id)
            contacts = [item["id"] for item in ref.items[CARE_CONTACT]]
            clean = VALIDATORS[kind](body, contacts)
            try:
                _refuse_duplicate(ref, kind, clean["client_reference"])
            except ConflictError:
                self.conflicts += 1
                raise
            if kind == STATUS_EVENT:
                _check_transition(ref)
            moment = self._clock.tick()
            if kind == STATUS_EVENT:
                self._apply_status(ref, clean, moment)
            if kind == RISK_ALERT:  # the duty team's part, set by the trust, never the client
                clean.update(status=RISK_ALERT_OPEN, acknowledged_at=None, acknowledged_by=None)
            return copy.deepcopy(self._mint(ref, kind, clean, moment))

    def get_item(self, referral_id: str, kind: str, item_id: str) -> JsonDict:
        """One item of a referral, as the API serves it.

        Raises:
            UnknownReferralError: no referral has this id.
            UnknownItemError: the referral has no such item.
        """
        with self._lock:
            return copy.deepcopy(_find_item(self._require(referral_id), kind, item_id))

    def acknowledge_risk_alert(self, referral_id: str, alert_id: str, body: object) -> JsonDict:
        """The duty team acknowledges a risk alert (``{"by": <staff id>, "close": false}``).

        An open alert becomes ``acknowledged`` (or ``closed`` with ``close``), stamped now
        and with the staff id; acknowledging again keeps the first stamp, and only
        ``close`` changes an acknowledged alert. A closed alert stays as it is.

        Raises:
            UnknownReferralError: no referral has this id.
            UnknownItemError: the referral has no such risk alert.
            RecordValidationError: the body breaks a rule (field named).
        """
        by, close = acknowledgement(body)
        with self._lock:
            alert = _find_item(self._require(referral_id), RISK_ALERT, alert_id)
            wanted = RISK_ALERT_CLOSED if close else RISK_ALERT_ACKNOWLEDGED
            if alert["status"] == RISK_ALERT_CLOSED or alert["status"] == wanted:
                return copy.deepcopy(alert)
            self._touch(alert)
            if alert["status"] == RISK_ALERT_OPEN:
                alert.update(acknowledged_at=alert["updated_at"], acknowledged_by=by)
            alert["status"] = wanted
            return copy.deepcopy(alert)

    def list_items(
        self, referral_id: str, kind: str, client_reference: str | None = None
    ) -> list[JsonDict]:
        """A referral's items of one kind in creation order, optionally by client reference.

        Raises:
            UnknownReferralError: no referral has this id.
        """
        with self._lock:
            items = self._require(referral_id).items[kind]
            chosen = [i for i in items if client_reference in (None, i["client_reference"])]
            return copy.deepcopy(chosen)

    def update_referral(self, referral_id: str, changes: Mapping[str, object]) -> JsonDict:
        """Simulate a clinician editing a referral (tests of re-pull); ``patient`` merges.

        Raises:
            UnknownReferralError: no referral has this id.
        """
        with self._lock:
            ref = self._require(referral_id)
            for name, value in changes.items():
                patient = ref.record.get("patient")
                if name == "patient" and isinstance(value, Mapping) and isinstance(patient, dict):
                    patient.update(copy.deepcopy(dict(value)))
                else:
                    ref.record[name] = copy.deepcopy(value)
            self._bump(ref)
            return copy.deepcopy(ref.record)

    def add_referral(
        self, referred_on_to: str | None = None, *, patient_of: str | None = None
    ) -> JsonDict:
        """Simulate a new referral arriving now, from the same seeded generator.

        ``patient_of`` names an existing referral whose patient is referred again (a
        re-referral: same local id and NHS number).

        Raises:
            TerminalError: the state was built without a generator.
            UnknownReferralError: ``patient_of`` is not a referral id.
        """
        if self._factory is None:
            raise TerminalError("this state has no referral generator")
        with self._lock:
            record = self._factory.referral(referred_on_to or str(self.meta["provider_code"]))
            if patient_of is not None:
                record["patient"] = copy.deepcopy(self._require(patient_of).record["patient"])
            ref = _Referral(str(record["id"]), record, self._clock.tick())
            record["updated_at"] = format_timestamp(ref.updated)
            self._referrals[ref.key] = ref
            return copy.deepcopy(record)

    def update_item(self, referral_id: str, kind: str, item_id: str, body: object) -> JsonDict:
        """The API's PUT: replace an item with a checked body carrying its client reference.

        Raises:
            UnknownReferralError: no referral has this id.
            UnknownItemError: the referral has no such item.
            RecordValidationError: the body breaks a rule, or names another client reference.
        """
        with self._lock:
            ref = self._require(referral_id)
            item = _find_item(ref, kind, item_id)
            contacts = [i["id"] for i in ref.items[CARE_CONTACT] if i["id"] != item_id]
            clean = VALIDATORS[kind](body, contacts)
            if clean["client_reference"] != item["client_reference"]:
                raise RecordValidationError(
                    "must be the item's own client_reference", field="client_reference"
                )
            item.update(clean)
            self._touch(item)
            return copy.deepcopy(item)

    # --- trust-side edits (a clinician at the trust, not the API) ----------------------
    def edit_item(
        self, referral_id: str, kind: str, item_id: str, changes: Mapping[str, object]
    ) -> JsonDict:
        """Simulate a clinician editing a written item in the trust's own screens.

        Raises:
            UnknownReferralError: no referral has this id.
            UnknownItemError: the referral has no such item.
        """
        with self._lock:
            item = _find_item(self._require(referral_id), kind, item_id)
            item.update(copy.deepcopy(dict(changes)))
            self._touch(item)
            return copy.deepcopy(item)

    def delete_item(self, referral_id: str, kind: str, item_id: str) -> JsonDict:
        """Simulate a clinician deleting a written item; returns what was deleted.

        Raises:
            UnknownReferralError: no referral has this id.
            UnknownItemError: the referral has no such item.
        """
        with self._lock:
            ref = self._require(referral_id)
            item = _find_item(ref, kind, item_id)
            ref.items[kind].remove(item)
            return copy.deepcopy(item)

    def merge_patients(self, keep_local_id: str, merged_local_id: str) -> list[str]:
        """Simulate the trust merging two patient records: the second becomes the first.

        Every referral of the merged patient takes the kept patient's details (local id,
        NHS number, demographics) and a new version. Returns those referral ids.

        Raises:
            UnknownPatientError: no referral names one of the two local ids.
        """
        with self._lock:
            kept = self._patient(keep_local_id)
            moved = [r for r in self._referrals.values() if _local_id(r) == merged_local_id]
            if not moved:
                raise UnknownPatientError("no referral names the patient to merge")
            for ref in moved:
                ref.record["patient"] = copy.deepcopy(kept)
                self._bump(ref)
            return [ref.key for ref in moved]

    def fix_hostile(self, referral_id: str) -> JsonDict:
        """Simulate someone at the trust correcting a malformed referral's broken field.

        The field gets a well-formed value from the same seeded generator; the record
        stops being hostile and gets a new version.

        Raises:
            UnknownReferralError: no referral has this id.
            TerminalError: the referral is not malformed, or there is no generator.
        """
        info = self.hostile.get(referral_id)
        if info is None or self._factory is None:
            raise TerminalError("this referral is not a malformed one the simulator can fix")
        with self._lock:
            ref = self._require(referral_id)
            good = self._factory.referral(str(self.meta["provider_code"]))
            _copy_path(good, ref.record, info.field)
            del self.hostile[referral_id]
            self._bump(ref)
            return copy.deepcopy(ref.record)

    def fresh_nhs_number(self) -> str:
        """A valid NHS number no patient has yet (to simulate one traced later)."""
        if self._factory is None:
            raise TerminalError("this state has no referral generator")
        with self._lock:
            return self._factory.nhs_number()

    def _patient(self, local_id: str) -> JsonDict:
        for ref in self._referrals.values():
            if _local_id(ref) == local_id:
                return dict(ref.record["patient"])
        raise UnknownPatientError("no referral names this patient")

    def _touch(self, item: JsonDict) -> None:
        version = item.get("version")
        item["version"] = version + 1 if isinstance(version, int) else 2
        item["updated_at"] = format_timestamp(self._clock.tick())

    def export(self) -> JsonDict:
        """The whole record system in creation order, for tests and the demo."""
        with self._lock:
            referrals = [_export_entry(ref) for ref in self._referrals.values()]
            hostile = [_hostile_entry(info) for info in self.hostile.values()]
            return copy.deepcopy({**self.meta, "referrals": referrals, "hostile": hostile})

    def _require(self, referral_id: str) -> _Referral:
        ref = self._referrals.get(referral_id)
        if ref is None or ref.record.get("id") != referral_id:
            raise UnknownReferralError("no referral with this id")
        return ref

    def _mint(self, ref: _Referral, kind: str, clean: JsonDict, moment: datetime) -> JsonDict:
        self._counters[kind] += 1
        item_id = f"{ID_PREFIXES[kind]}{self._counters[kind]:07d}"
        created = format_timestamp(moment)
        item = {"id": item_id, "referral_id": ref.key, "version": 1, "created_at": created}
        item.update(clean)
        ref.items[kind].append(item)
        return item

    def _apply_status(self, ref: _Referral, event: JsonDict, moment: datetime) -> None:
        ref.record["status"] = event["status"]
        if event["status"] == "discharged":
            ref.record["end_code"] = event["end_code"]
            ref.record["discharge_date"] = event["date"]
        self._bump(ref, moment)

    def _bump(self, ref: _Referral, moment: datetime | None = None) -> None:
        ref.updated = moment or self._clock.tick()
        version = ref.record.get("version")
        ref.record["version"] = version + 1 if isinstance(version, int) else 1
        ref.record["updated_at"] = format_timestamp(ref.updated)


def _matches(
    ref: _Referral,
    referred_on_to: str | None,
    updated_since: datetime | None,
    after: paging.Position | None,
) -> bool:
    if referred_on_to is not None and ref.record.get("referred_on_to") != referred_on_to:
        return False
    if updated_since is not None and ref.updated < updated_since:
        return False
    return after is None or ref.order > (after.updated, after.key)


def _find_item(ref: _Referral, kind: str, item_id: str) -> JsonDict:
    for item in ref.items[kind]:
        if item["id"] == item_id:
            return item
    raise UnknownItemError("no item with this id on this referral")


def _local_id(ref: _Referral) -> object:
    patient = ref.record.get("patient")
    return patient.get("local_id") if isinstance(patient, dict) else None


def _copy_path(source: JsonDict, target: JsonDict, path: str) -> None:
    """Copy the value at a dotted path (``patient.nhs_number``) from source into target."""
    head, _, rest = path.partition(".")
    if not rest or not isinstance(target.get(head), dict):
        target[head] = copy.deepcopy(source[head])
        return
    _copy_path(source[head], target[head], rest)


def _check_transition(ref: _Referral) -> None:
    """A discharged referral is closed: the trust refuses further status changes."""
    if ref.record.get("status") == "discharged":
        raise RecordValidationError("referral is already discharged", field="status")


def _refuse_duplicate(ref: _Referral, kind: str, client_reference: str) -> None:
    for item in ref.items[kind]:
        if item["client_reference"] == client_reference:
            raise ConflictError(
                "client_reference already used for this kind on this referral",
                existing_id=item["id"],
            )


def _export_entry(ref: _Referral) -> JsonDict:
    entry: JsonDict = {"referral": ref.record}
    for kind in ARTEFACT_KINDS:
        entry[EXPORT_KEYS[kind]] = ref.items[kind]
    return entry


def _hostile_entry(info: HostileInfo) -> JsonDict:
    return {
        "key": info.key,
        "referral_id": info.referral_id,
        "kind": info.kind,
        "field": info.field,
    }
