"""Server-side checks of write bodies, as strict as the trust API document says.

A strict simulator is the point: a mapping bug in the engine shows up as a 422 that names
the field, instead of a silently stored bad value. Errors carry the field path and the rule
only, never the value, because values here are patient data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeGuard

from ehr_bridge.errors import RecordValidationError
from ehr_bridge.sim.records import (
    APPOINTMENT_TYPES,
    ASSESSMENT,
    ATTENDANCE_CODES,
    CARE_CONTACT,
    CLINICAL_NOTE,
    CONSULTATION_MECHANISMS,
    END_CODES,
    KNOWN_TOOLS,
    OTHER_TOOL_MAX_SCORE,
    RISK_ALERT,
    RISK_LEVELS,
    RISK_PRIORITIES,
    RISK_PRIORITY_OF_LEVEL,
    RISK_REASONS,
    STATUS_EVENT,
    WRITABLE_STATUSES,
    JsonDict,
    ToolRule,
    parse_timestamp,
)

TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
#: a SNOMED CT concept id, or a local code the trust configured (LOCAL-...)
_TOOL_CODE = re.compile(r"[1-9]\d{5,17}|LOCAL-[A-Z0-9\-]{1,26}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SNOMED = re.compile(r"[1-9]\d{5,17}")
#: who acknowledged a risk alert: the duty clinician's user id at the trust, never a name
STAFF_ID = re.compile(r"[A-Za-z0-9._@-]{1,64}")


def invalid(field: str, rule: str) -> RecordValidationError:
    """The refusal of one field: the rule it breaks, never its value."""
    return RecordValidationError(rule, field=field, code="validation")


class BodyReader:
    """Reads typed fields out of one JSON body, refusing unknown keys and wrong types."""

    def __init__(self, body: object, allowed: Collection[str]) -> None:
        if not isinstance(body, dict):
            raise RecordValidationError("body must be a JSON object", code="validation")
        for key in body:
            if key not in allowed:
                raise invalid(str(key), "unknown field")
        self.body: JsonDict = body

    def present(self, name: str) -> bool:
        """True when the field is given and not null."""
        return self.body.get(name) is not None

    def text(self, name: str, *, max_len: int, optional: bool = False) -> str | None:
        """A string of 1..``max_len`` characters (or None when optional and absent)."""
        value = self.body.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not 1 <= len(value) <= max_len:
            raise invalid(name, f"must be a string of 1..{max_len} characters")
        return value

    def pattern(self, name: str, regex: re.Pattern[str], rule: str) -> str:
        """A string matching ``regex`` in full."""
        value = self.body.get(name)
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise invalid(name, rule)
        return value

    def code(self, name: str, allowed: Collection[str]) -> str:
        """A code from a closed list."""
        value = self.body.get(name)
        if not isinstance(value, str) or value not in allowed:
            raise invalid(name, "must be a code from the list")
        return value

    def day(self, name: str) -> str:
        """A real calendar date written ``YYYY-MM-DD``."""
        value = self.pattern(name, _DATE, "must be a date YYYY-MM-DD")
        try:
            date.fromisoformat(value)
        except ValueError:
            raise invalid(name, "must be a real calendar date") from None
        return value

    def timestamp(self, name: str) -> str:
        """An ISO 8601 timestamp with a zone (UTC ``Z`` expected)."""
        value = self.body.get(name)
        if not isinstance(value, str) or "T" not in value:
            raise invalid(name, "must be an ISO 8601 timestamp")
        try:
            parse_timestamp(value)
        except ValueError:
            raise invalid(name, "must be an ISO 8601 timestamp with a time zone") from None
        return value

    def score(self, name: str, high: float, low: float = 0) -> float:
        """A number ``low..high`` with at most two decimal places (a pro-rated total, a mean)."""
        value = self.body.get(name)
        limits = f"{_bound(low)}..{_bound(high)}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid(name, f"must be a number {limits}")
        if not low <= value <= high or round(value, 2) != value:
            raise invalid(name, f"must be a number {limits}, at most 2 decimal places")
        return float(value) if value != int(value) else int(value)

    def integer(self, name: str, low: int, high: int) -> int:
        """A JSON integer (not a boolean, not a float) in ``low..high``."""
        value = self.body.get(name)
        if not _is_int(value) or not low <= value <= high:
            raise invalid(name, f"must be an integer {low}..{high}")
        return value


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _bound(value: float) -> str:
    """A range bound as people write it (0, not 0.0)."""
    return str(int(value)) if value == int(value) else str(value)


def tool_score(reader: BodyReader, name: str, rule: ToolRule) -> float:
    """A total in the tool's range: two decimal places where the tool allows, else whole."""
    if rule.decimal:
        return reader.score(name, rule.max_score, rule.min_score)
    return reader.integer(name, int(rule.min_score), int(rule.max_score))


def tool_items(value: object, rule: ToolRule, score: float, name: str) -> list[int | None]:
    """The item answers of one known tool, checked against the total as the tool scores it.

    A sum with every item answered must equal the total; a sum with unanswered items is
    pro-rated (the mean of the answered ones stands in, NHS Data Dictionary WSAS rule); a
    mean tool (Mobility Inventory) is the mean of the answered items. Derived totals are
    compared at two decimal places, half up.
    """
    if not isinstance(value, list) or len(value) != rule.item_count:
        raise invalid(name, f"{rule.name} needs a list of {rule.item_count} answers")
    for index, item in enumerate(value):
        if item is not None and (not _is_int(item) or not rule.item_min <= item <= rule.item_max):
            raise invalid(f"{name}[{index}]", f"must be a whole number {_item_range(rule)}")
    present = [item for item in value if item is not None]
    missing = len(value) - len(present)
    if missing > rule.max_missing or not present:
        raise invalid(name, "too many unanswered items")
    if _tool_total(rule, present) != Decimal(str(score)):
        raise invalid(name, "items must add up to the score as the tool scores them")
    return list(value)


def _item_range(rule: ToolRule) -> str:
    return f"{rule.item_min}..{rule.item_max}"


def _tool_total(rule: ToolRule, present: list[int]) -> Decimal:
    total = Decimal(sum(present))
    if rule.mean:
        total /= len(present)
    elif len(present) < rule.item_count:
        total = total * rule.item_count / len(present)
    return total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _care_contact_link(reader: BodyReader, care_contacts: Collection[str]) -> str | None:
    value = reader.body.get("care_contact_id")
    if value is None:
        return None
    if not isinstance(value, str) or value not in care_contacts:
        raise invalid("care_contact_id", "must be a care contact of this referral")
    return value


def _attendance(reader: BodyReader) -> str:
    value = reader.body.get("attendance")
    if isinstance(value, str) and len(value) == 2 and value.startswith("0"):
        value = value[1]
    if not isinstance(value, str) or value not in ATTENDANCE_CODES:
        raise invalid("attendance", "must be an AttendOrDNACode 2..7")
    return value


def care_contact(body: object, care_contacts: Collection[str]) -> JsonDict:
    """IDS201-shaped care contact; attendance "05" is accepted and stored as "5"."""
    reader = BodyReader(body, _CARE_CONTACT_FIELDS)
    return {
        "client_reference": reader.text("client_reference", max_len=128),
        "date": reader.day("date"),
        "time": reader.pattern("time", TIME_OF_DAY, "must be a time HH:MM"),
        "duration_minutes": reader.integer("duration_minutes", 1, 600),
        "appointment_type": reader.code("appointment_type", APPOINTMENT_TYPES),
        "attendance": _attendance(reader),
        "consultation_mechanism": reader.code("consultation_mechanism", CONSULTATION_MECHANISMS),
        "care_professional": reader.text("care_professional", max_len=128, optional=True),
    }


def clinical_note(body: object, care_contacts: Collection[str]) -> JsonDict:
    """A free-text note, optionally tied to a care contact of the same referral."""
    reader = BodyReader(body, _NOTE_FIELDS)
    return {
        "client_reference": reader.text("client_reference", max_len=128),
        "care_contact_id": _care_contact_link(reader, care_contacts),
        "authored_at": reader.timestamp("authored_at"),
        "title": reader.text("title", max_len=500),
        "text": reader.text("text", max_len=20000),
        "author": reader.text("author", max_len=128, optional=True),
    }


def assessment(body: object, care_contacts: Collection[str]) -> JsonDict:
    """A coded scored assessment (IDS606/607); known tools get range and item-sum checks.

    A LOCAL- code must be one this trust configured (``KNOWN_TOOLS``): a local code means
    nothing outside the trust, so an unknown one could only be filed under a guess. Any
    SNOMED CT concept is filed; those without a rule here take a whole score 0..1000.
    """
    reader = BodyReader(body, _ASSESSMENT_FIELDS)
    client_reference = reader.text("client_reference", max_len=128)
    link = _care_contact_link(reader, care_contacts)
    tool_code = reader.pattern(
        "tool_code", _TOOL_CODE, "must be a SNOMED CT concept id or a LOCAL- code"
    )
    rule = KNOWN_TOOLS.get(tool_code)
    if rule is None and tool_code.startswith("LOCAL-"):
        raise invalid("tool_code", "not a local code this trust knows")
    score = (
        tool_score(reader, "score", rule)
        if rule
        else reader.integer("score", 0, OTHER_TOOL_MAX_SCORE)
    )
    return {
        "client_reference": client_reference,
        "care_contact_id": link,
        "tool_code": tool_code,
        "score": score,
        "completed_at": reader.timestamp("completed_at"),
        "items": _items(reader.body.get("items"), rule, score),
    }


def _items(value: Any, rule: ToolRule | None, score: float) -> list[int | None] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise invalid("items", "must be a non-empty list of integers")
    if rule is not None:
        return tool_items(value, rule, score, "items")
    for index, item in enumerate(value):
        if not _is_int(item) or not 0 <= item <= OTHER_TOOL_MAX_SCORE:
            raise invalid(f"items[{index}]", f"must be an integer 0..{OTHER_TOOL_MAX_SCORE}")
    if sum(value) != score:
        raise invalid("items", "items must sum to score")
    return list(value)


def status_event(body: object, care_contacts: Collection[str]) -> JsonDict:
    """A status change; ``end_code`` is required for, and only allowed with, discharged."""
    reader = BodyReader(body, _STATUS_FIELDS)
    client_reference = reader.text("client_reference", max_len=128)
    status = reader.code("status", WRITABLE_STATUSES)
    day = reader.day("date")
    end_code: str | None = None
    if status == "discharged":
        end_code = reader.code("end_code", END_CODES)
    elif reader.present("end_code"):
        raise invalid("end_code", "only allowed when status is discharged")
    return {
        "client_reference": client_reference,
        "status": status,
        "date": day,
        "end_code": end_code,
    }


def risk_alert(body: object, care_contacts: Collection[str]) -> JsonDict:
    """An alert for the duty team: a risk the provider raised, coded, with its urgency.

    ``priority`` must be the one ``level`` travels with (routine_review: routine, urgent:
    urgent, immediate: stat), so a mapping that pairs them wrongly is refused rather than
    filed with an urgency nobody meant. The trust sets ``status`` itself (``open``).
    """
    reader = BodyReader(body, _RISK_ALERT_FIELDS)
    client_reference = reader.text("client_reference", max_len=128)
    level = reader.code("level", RISK_LEVELS)
    priority = reader.code("priority", RISK_PRIORITIES)
    if priority != RISK_PRIORITY_OF_LEVEL[level]:
        raise invalid("priority", "must be the level's priority (routine, urgent or stat)")
    return {
        "client_reference": client_reference,
        "level": level,
        "priority": priority,
        "reason": reader.code("reason", RISK_REASONS),
        "raised_at": reader.timestamp("raised_at"),
        "risk_code": reader.pattern("risk_code", _SNOMED, "must be a SNOMED CT concept id"),
        "risk_display": reader.text("risk_display", max_len=500, optional=True),
        "summary": reader.text("summary", max_len=2000, optional=True),
        "care_contact_id": _care_contact_link(reader, care_contacts),
    }


def acknowledgement(body: object) -> tuple[str, bool]:
    """The duty team's acknowledgement: who (a staff id) and whether it also closes the alert."""
    reader = BodyReader(body, frozenset({"by", "close"}))
    by = reader.pattern("by", STAFF_ID, "must be a staff id (1..64 of A-Z a-z 0-9 . _ @ -)")
    close = reader.body.get("close", False)
    if not isinstance(close, bool):
        raise invalid("close", "must be true or false")
    return by, close


_CARE_CONTACT_FIELDS = frozenset(
    {"client_reference", "date", "time", "duration_minutes", "appointment_type", "attendance"}
    | {"consultation_mechanism", "care_professional"}
)
_NOTE_FIELDS = frozenset(
    {"client_reference", "care_contact_id", "authored_at", "title", "text", "author"}
)
_ASSESSMENT_FIELDS = frozenset(
    {"client_reference", "care_contact_id", "tool_code", "score", "completed_at", "items"}
)
_STATUS_FIELDS = frozenset({"client_reference", "status", "date", "end_code"})
_RISK_ALERT_FIELDS = frozenset(
    {"client_reference", "level", "priority", "reason", "raised_at", "risk_code"}
    | {"risk_display", "summary", "care_contact_id"}
)

Validator = Callable[[object, Collection[str]], JsonDict]

#: the body check for each write kind
VALIDATORS: dict[str, Validator] = {
    CARE_CONTACT: care_contact,
    CLINICAL_NOTE: clinical_note,
    ASSESSMENT: assessment,
    STATUS_EVENT: status_event,
    RISK_ALERT: risk_alert,
}
