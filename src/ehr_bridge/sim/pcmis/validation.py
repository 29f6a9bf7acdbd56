"""Server-side checks of PC-MIS-style write bodies: strict, so mapping bugs show as 422s.

Each error names the field (this API's own PascalCase name) and the rule, never the value.
The body reader is the IAPTUS-style simulator's; only the shapes and code lists differ.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

from ehr_bridge.sim import records as tools
from ehr_bridge.sim.pcmis.records import (
    APPOINTMENT,
    APPOINTMENT_TYPES,
    DISCHARGE_REASONS,
    MEDIA,
    NOTE,
    OUTCOMES,
    QUESTIONNAIRE,
    RISK_ALERT,
    RISK_PRIORITIES,
    RISK_PRIORITY_OF_SEVERITY,
    RISK_SEVERITIES,
    RISK_SOURCES,
    STATUS_CHANGE,
    WRITABLE_STATUSES,
    JsonDict,
    parse_date,
)
from ehr_bridge.sim.records import ToolRule
from ehr_bridge.sim.validation import (
    STAFF_ID,
    TIME_OF_DAY,
    BodyReader,
    invalid,
    tool_items,
    tool_score,
)

_SNOMED = re.compile(r"[1-9]\d{5,17}")

#: the system's measure names -> the scale's limits (the same published scales the
#: IAPTUS-style trust files by CodedAssToolType); any other name is refused
MEASURES: dict[str, ToolRule] = {
    "PHQ9": tools.PHQ9,
    "GAD7": tools.GAD7,
    "WSAS": tools.WSAS,
    "PDSS": tools.PDSS,
    "SPIN": tools.SPIN,
    "MI_ALONE": tools.MI_ALONE,
    "IESR": tools.IESR,
    "PCL5": tools.PCL5,
    "HAI": tools.SHORT_HAI,
}


def _date(reader: BodyReader, name: str) -> str:
    value = reader.body.get(name)
    try:
        if not isinstance(value, str):
            raise ValueError
        parse_date(value)
    except ValueError:
        raise invalid(name, "must be a real date DD/MM/YYYY") from None
    return value


def _appointment_link(reader: BodyReader, appointments: Collection[int]) -> int | None:
    value = reader.body.get("AppointmentId")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value not in appointments:
        raise invalid("AppointmentId", "must be an appointment of this referral (a number)")
    return value


def _reference(reader: BodyReader) -> str:
    value = reader.text("ExternalRef", max_len=64)
    assert value is not None
    return value


def appointment(body: object, appointments: Collection[int]) -> JsonDict:
    """A session: local date and time, minutes, and three local code lists."""
    reader = BodyReader(body, _APPOINTMENT_FIELDS)
    return {
        "ExternalRef": _reference(reader),
        "AppointmentDate": _date(reader, "AppointmentDate"),
        "StartTime": reader.pattern("StartTime", TIME_OF_DAY, "must be a time HH:MM"),
        "DurationMins": reader.integer("DurationMins", 1, 600),
        "AppointmentType": reader.code("AppointmentType", APPOINTMENT_TYPES),
        "Outcome": reader.code("Outcome", OUTCOMES),
        "Medium": reader.code("Medium", MEDIA),
        "Clinician": reader.text("Clinician", max_len=128, optional=True),
    }


def note(body: object, appointments: Collection[int]) -> JsonDict:
    """A case note, optionally tied to an appointment of the same referral."""
    reader = BodyReader(body, _NOTE_FIELDS)
    return {
        "ExternalRef": _reference(reader),
        "AppointmentId": _appointment_link(reader, appointments),
        "NoteDate": _date(reader, "NoteDate"),
        "NoteTime": reader.pattern("NoteTime", TIME_OF_DAY, "must be a time HH:MM"),
        "Subject": reader.text("Subject", max_len=200, optional=True),
        "Body": reader.text("Body", max_len=20000),
    }


def questionnaire(body: object, appointments: Collection[int]) -> JsonDict:
    """A scored measure by local name, with range and item-sum checks."""
    reader = BodyReader(body, _QUESTIONNAIRE_FIELDS)
    reference = _reference(reader)
    link = _appointment_link(reader, appointments)
    measure = reader.code("Measure", MEASURES)
    rule = MEASURES[measure]
    # a pro-rated form (WSAS with an unanswered item) or a mean (MI) may be a decimal
    total = tool_score(reader, "TotalScore", rule)
    answers = reader.body.get("Answers")
    return {
        "ExternalRef": reference,
        "AppointmentId": link,
        "Measure": measure,
        "TotalScore": total,
        "DateCompleted": _date(reader, "DateCompleted"),
        "Answers": None if answers is None else tool_items(answers, rule, total, "Answers"),
    }


def status_change(body: object, appointments: Collection[int]) -> JsonDict:
    """A status change; a discharge reason is required for, and only allowed with, DIS."""
    reader = BodyReader(body, _STATUS_FIELDS)
    reference = _reference(reader)
    status = reader.code("Status", WRITABLE_STATUSES)
    day = _date(reader, "EffectiveDate")
    reason: str | None = None
    if status == "DIS":
        reason = reader.code("DischargeReason", DISCHARGE_REASONS)
    elif reader.present("DischargeReason"):
        raise invalid("DischargeReason", "only allowed when Status is DIS")
    return {
        "ExternalRef": reference,
        "Status": status,
        "EffectiveDate": day,
        "DischargeReason": reason,
    }


def risk_alert(body: object, appointments: Collection[int]) -> JsonDict:
    """A risk for the duty worker: severity with its one priority, source, SNOMED CT code."""
    reader = BodyReader(body, _RISK_FIELDS)
    reference = _reference(reader)
    severity = reader.code("Severity", RISK_SEVERITIES)
    priority = reader.code("Priority", RISK_PRIORITIES)
    if priority != RISK_PRIORITY_OF_SEVERITY[severity]:
        raise invalid("Priority", "must be the Severity's priority (P1, P2 or P3)")
    return {
        "ExternalRef": reference,
        "AppointmentId": _appointment_link(reader, appointments),
        "Severity": severity,
        "Priority": priority,
        "Source": reader.code("Source", RISK_SOURCES),
        "RaisedDate": _date(reader, "RaisedDate"),
        "RaisedTime": reader.pattern("RaisedTime", TIME_OF_DAY, "must be a time HH:MM"),
        "RiskCode": reader.pattern("RiskCode", _SNOMED, "must be a SNOMED CT concept id"),
        "RiskDescription": reader.text("RiskDescription", max_len=200, optional=True),
        "Summary": reader.text("Summary", max_len=2000, optional=True),
    }


def acknowledger(value: object) -> str:
    """The duty worker's user id, as this system logs it (never a name)."""
    if not isinstance(value, str) or not STAFF_ID.fullmatch(value):
        raise invalid("AcknowledgedBy", "must be a user id (1..64 of A-Z a-z 0-9 . _ @ -)")
    return value


_APPOINTMENT_FIELDS = frozenset(
    {"ExternalRef", "AppointmentDate", "StartTime", "DurationMins", "AppointmentType"}
    | {"Outcome", "Medium", "Clinician"}
)
_NOTE_FIELDS = frozenset(
    {"ExternalRef", "AppointmentId", "NoteDate", "NoteTime", "Subject", "Body"}
)
_QUESTIONNAIRE_FIELDS = frozenset(
    {"ExternalRef", "AppointmentId", "Measure", "TotalScore", "DateCompleted", "Answers"}
)
_STATUS_FIELDS = frozenset({"ExternalRef", "Status", "EffectiveDate", "DischargeReason"})
_RISK_FIELDS = frozenset(
    {"ExternalRef", "AppointmentId", "Severity", "Priority", "Source", "RaisedDate"}
    | {"RaisedTime", "RiskCode", "RiskDescription", "Summary"}
)

Validator = Callable[[object, Collection[int]], JsonDict]

#: the body check for each write kind
VALIDATORS: dict[str, Validator] = {
    APPOINTMENT: appointment,
    NOTE: note,
    QUESTIONNAIRE: questionnaire,
    STATUS_CHANGE: status_change,
    RISK_ALERT: risk_alert,
}
