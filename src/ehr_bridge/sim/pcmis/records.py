"""The PC-MIS-style record shape: its field names, date formats and code lists.

Referrals come from the same seeded generator as the IAPTUS-style simulator (so the two
caseloads are comparable), then are rewritten into this system's own dialect: PascalCase
names, nested client details, ``DD/MM/YYYY`` dates, timestamps in UK local time with an
offset, and local code lists (``GP`` not ``A1``, ``F`` not ``2``, ``ONW`` not
``referred_on``). Nothing here is taken from a real PC-MIS specification (none is public);
it is a plausible second dialect that a mapping file alone must be able to read and write.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

JsonDict = dict[str, Any]

LONDON = ZoneInfo("Europe/London")
#: the API's date format (``DD/MM/YYYY``)
DATE_FORMAT = "%d/%m/%Y"

#: write kinds as the state keys them; the URL segment and the id field of each
APPOINTMENT = "appointment"
NOTE = "note"
QUESTIONNAIRE = "questionnaire"
STATUS_CHANGE = "status_change"
RISK_ALERT = "risk_alert"
KINDS = (APPOINTMENT, NOTE, QUESTIONNAIRE, STATUS_CHANGE, RISK_ALERT)
SEGMENTS = {
    APPOINTMENT: "appointments",
    NOTE: "notes",
    QUESTIONNAIRE: "questionnaires",
    STATUS_CHANGE: "status-changes",
    RISK_ALERT: "risk-alerts",
}
ID_FIELDS = {
    APPOINTMENT: "AppointmentId",
    NOTE: "NoteId",
    QUESTIONNAIRE: "QuestionnaireId",
    STATUS_CHANGE: "StatusChangeId",
    RISK_ALERT: "RiskAlertId",
}

#: data-set SourceOfReferralMH -> this system's referral source codes (what it stores)
SOURCE_CODES = {
    "A1": ("GP", "GP practice"),
    "A2": ("PCOTH", "Other primary care"),
    "B1": ("SELF", "Self-referral"),
    "B2": ("CARER", "Carer or relative"),
    "C1": ("LA", "Local authority"),
    "D1": ("EMP", "Employer"),
    "G1": ("VOL", "Voluntary sector"),
    "H1": ("SEC", "Secondary care"),
    "I1": ("TRANS", "Transfer from another service"),
    "M3": ("OTHER", "Other"),
}
#: data-set Gender -> this system's sex codes
SEX_CODES = {"1": "M", "2": "F", "9": "I", "X": "U"}
#: IAPTUS-style referral status -> this system's status codes
STATUS_CODES = {"received": "NEW", "accepted": "ACC", "referred_on": "ONW", "discharged": "DIS"}
#: statuses a client may set through status-changes (the service sets ONW itself)
WRITABLE_STATUSES = frozenset({"NEW", "ACC", "DIS"})
#: NHS number verification: data-set NHSNumberStatus -> this system's words
NHS_STATUS_CODES = {"01": "Verified", "02": "Unverified"}

#: this system's local code lists for writes (each mirrors a data-set list; see pcmis.yaml)
APPOINTMENT_TYPES = frozenset(
    {"ASSESS", "TREAT", "ASSESS_TREAT", "REVIEW", "REVIEW_TREAT", "OTHER", "EMPLOY"}
)
OUTCOMES = frozenset({"CANC_CLIENT", "DNA", "CANC_SERVICE", "ATT", "LATE_SEEN", "LATE_NOT_SEEN"})
MEDIA = frozenset(
    {"F2F", "TEL", "TALKTYPE", "EMAIL", "SMS", "IM", "VIDEO", "BOARD", "CHAT", "OTHER"}
)
DISCHARGE_REASONS = frozenset(
    {"NOTSUIT", "SIGNPOST", "ADVICE", "REFERRED", "DECLINED", "INCOMPLETE", "DECEASED"}
    | {"COMPLETED", "ENDED_PRO", "ENDED_CLIENT", "NOTASSESSED", "UNKNOWN"}
)

#: risk alerts: this system's severities, each with the one priority it must carry
RISK_PRIORITY_OF_SEVERITY = {"REVIEW": "P3", "URGENT": "P2", "EMERGENCY": "P1"}
RISK_SEVERITIES = frozenset(RISK_PRIORITY_OF_SEVERITY)
RISK_PRIORITIES = frozenset(RISK_PRIORITY_OF_SEVERITY.values())
#: where a risk alert came from (each mirrors one of ehr-bridge's risk reasons)
RISK_SOURCES = frozenset({"PHQ9_Q9", "PROVIDER", "ASSESSMENT", "SYSTEM"})
#: a risk alert's status as this system keeps it: the duty worker acknowledges, then closes
RISK_STATUSES = ("OPEN", "ACKNOWLEDGED", "CLOSED")


def format_date(day: date) -> str:
    """``DD/MM/YYYY``."""
    return day.strftime(DATE_FORMAT)


def parse_date(text: str) -> date:
    """Read ``DD/MM/YYYY`` strictly (two-digit day and month).

    Raises:
        ValueError: any other shape, or not a real date.
    """
    if len(text) != 10 or text[2] != "/" or text[5] != "/":
        raise ValueError("expected DD/MM/YYYY")
    return datetime.strptime(text, DATE_FORMAT).date()


def format_modified(moment: datetime) -> str:
    """UK local time with its offset and milliseconds: ``2026-07-01T09:00:00.123+01:00``."""
    return moment.astimezone(LONDON).isoformat(timespec="milliseconds")


def _iso_to_local_date(text: str | None) -> str | None:
    return None if text is None else format_date(date.fromisoformat(text))


def to_pcmis(record: JsonDict, reference: str, modified: datetime) -> JsonDict:
    """Rewrite one generated (IAPTUS-style) referral into this system's dialect."""
    patient = record["patient"]
    source = SOURCE_CODES[record["source_of_referral"]]
    problem: str = record["presenting_problem"]
    return {
        "ReferralRef": reference,
        "Revision": 1,
        "LastModified": format_modified(modified),
        "DateReceived": _iso_to_local_date(record["received_date"]),
        "Source": {"Code": source[0], "Description": source[1]},
        "Diagnosis": f"{problem[:3]}.{problem[3:]}" if len(problem) > 3 else problem,
        "Status": STATUS_CODES[record["status"]],
        "Onward": {
            "ServiceCode": record["referred_on_to"],
            "Date": _iso_to_local_date(record["referred_on_date"]),
        },
        "Discharge": {"Date": None, "Reason": None},
        "Client": _client(patient),
    }


def _client(patient: JsonDict) -> JsonDict:
    return {
        "ClientId": int(patient["local_id"].lstrip("P")),
        "NHSNumber": f"{patient['nhs_number'][:3]} {patient['nhs_number'][3:6]} "
        f"{patient['nhs_number'][6:]}",
        "NHSNumberStatus": NHS_STATUS_CODES[patient["nhs_number_status"]],
        "Surname": patient["family_name"],
        "Forenames": patient["given_name"],
        "DOB": _iso_to_local_date(patient["birth_date"]),
        "Sex": SEX_CODES[patient["gender"]],
        "Address": {"Postcode": patient["postcode"]},
        "Contact": {"Mobile": patient["phone"], "Email": patient["email"]},
    }
