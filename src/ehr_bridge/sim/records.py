"""Code lists and wire formats shared by the simulator's generator, state and validation.

The simulator must not import the engine's domain code (it exists to test it), so the few
data-set code lists it needs are restated here from ``docs/trust-api.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

JsonDict = dict[str, Any]
Clock = Callable[[], datetime]

#: the fixed reference instant generated content is derived from (never the wall clock)
REFERENCE_NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

#: write kinds as the state keys them, and the URL segment of each
CARE_CONTACT = "care_contact"
CLINICAL_NOTE = "clinical_note"
ASSESSMENT = "assessment"
STATUS_EVENT = "status_event"
RISK_ALERT = "risk_alert"
ARTEFACT_KINDS = (CARE_CONTACT, CLINICAL_NOTE, ASSESSMENT, STATUS_EVENT, RISK_ALERT)
ID_PREFIXES = {
    CARE_CONTACT: "CC",
    CLINICAL_NOTE: "CN",
    ASSESSMENT: "AS",
    STATUS_EVENT: "ST",
    RISK_ALERT: "RA",
}
EXPORT_KEYS = {
    CARE_CONTACT: "care_contacts",
    CLINICAL_NOTE: "clinical_notes",
    ASSESSMENT: "assessments",
    STATUS_EVENT: "status_events",
    RISK_ALERT: "risk_alerts",
}

SOURCE_OF_REFERRAL_CODES = frozenset(
    ["A1", "A2", "A3", "A4", "B1", "B2", "C1", "C2", "C3", "D1", "D2"]
    + [f"E{n}" for n in range(1, 7)]
    + ["F1", "F2", "F3", "G1", "G2", "G3", "G4", "H1", "H2", "I1", "I2"]
    + [f"M{n}" for n in range(1, 6)]
)
GENDER_CODES = frozenset({"1", "2", "9", "X"})
APPOINTMENT_TYPES = frozenset({"01", "02", "03", "04", "05", "06", "10"})
ATTENDANCE_CODES = frozenset({"2", "3", "4", "5", "6", "7"})
CONSULTATION_MECHANISMS = frozenset({"01", "02", "04", "05", "09", "10", "11", "12", "13", "98"})
END_CODES = frozenset(
    {"10", "11", "12", "13", "14", "16", "17", "46", "47", "48", "49", "50", "95", "96"}
)
#: statuses a client may set with POST .../status (the trust sets ``referred_on`` itself)
WRITABLE_STATUSES = frozenset({"received", "accepted", "discharged"})

#: a risk alert's level -> the request priority it must travel with (routine/urgent/stat)
RISK_PRIORITY_OF_LEVEL = {"routine_review": "routine", "urgent": "urgent", "immediate": "stat"}
RISK_LEVELS = frozenset(RISK_PRIORITY_OF_LEVEL)
RISK_PRIORITIES = frozenset(RISK_PRIORITY_OF_LEVEL.values())
#: why a risk was raised (the provider's PHQ-9 item 9 answer, a clinician's flag, ...)
RISK_REASONS = frozenset({"phq9_item9", "provider_flag", "risk_assessment", "detected_issue"})
#: a risk alert's life at the trust: the duty team acknowledges it, then closes it
RISK_ALERT_OPEN = "open"
RISK_ALERT_ACKNOWLEDGED = "acknowledged"
RISK_ALERT_CLOSED = "closed"


@dataclass(frozen=True)
class ToolRule:
    """Score and item limits of a measure the trust files, checked like IDS606/607.

    Restated from the published scales, not read from the engine's measure catalogue: the
    simulator stands for someone else's system, so a wrong range in the catalogue shows up
    as a refusal here instead of leaking into the check.
    """

    name: str
    max_score: float
    item_count: int
    item_max: int
    #: items that may be left unanswered (WSAS: one, the total then uses their mean)
    max_missing: int = 0
    item_min: int = 0
    min_score: float = 0
    #: the total is the mean item rating (Mobility Inventory), not the sum
    mean: bool = False
    #: the total may carry two decimal places (a pro-rated sum, a mean)
    decimal: bool = False


#: the trust's measures, by what its systems file them under (CodedAssToolType, a local
#: name); ranges from the published scales (docs/reports.md lists the sources)
PHQ9 = ToolRule("PHQ-9", 27, 9, 3)
GAD7 = ToolRule("GAD-7", 21, 7, 3)
WSAS = ToolRule("WSAS", 40, 5, 8, max_missing=1, decimal=True)
PDSS = ToolRule("PDSS", 28, 7, 4)
SPIN = ToolRule("SPIN", 68, 17, 4)
#: Mobility Inventory, when alone: mean of 27 ratings 1..5, up to five skipped (NHS DD)
MI_ALONE = ToolRule(
    "MI (alone)", 5, 27, 5, max_missing=5, item_min=1, min_score=1, mean=True, decimal=True
)
IESR = ToolRule("IES-R", 88, 22, 4)
PCL5 = ToolRule("PCL-5", 80, 20, 4)
SHORT_HAI = ToolRule("Short HAI", 54, 18, 3)

KNOWN_TOOLS = {
    "720433000": PHQ9,
    "445455005": GAD7,
    # the simulated trust's local codes for measures with no confirmed SNOMED CT id; any
    # other LOCAL- code is refused: a trust files only the local codes it configured
    "LOCAL-WSAS": WSAS,
    "LOCAL-PDSS": PDSS,
    "LOCAL-SPIN": SPIN,
    "LOCAL-MI-ALONE": MI_ALONE,
    "LOCAL-IESR": IESR,
    "LOCAL-PCL5": PCL5,
    "LOCAL-HAI": SHORT_HAI,
}
#: score ceiling for SNOMED CT tools the simulator has no rule for
OTHER_TOOL_MAX_SCORE = 1000


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 UTC with ``Z``; milliseconds only when present, so generated data stays short."""
    utc = moment.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """Parse an aware ISO 8601 timestamp; naive ones are refused because cursors are UTC.

    Raises:
        ValueError: when the text is not an ISO 8601 timestamp with a zone.
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("timestamp without a time zone")
    return moment.astimezone(UTC)


def format_date(day: date) -> str:
    """The API's date format, ``YYYY-MM-DD``."""
    return day.isoformat()


def utc_now() -> datetime:
    """The real clock, for a running server."""
    return datetime.now(UTC)


class MonotonicClock:
    """Wraps a clock so each tick is at least 1 ms after the last, at millisecond precision.

    Every simulated system dates its changes with one, so a client cursor with a closed
    start never misses a change and never sees one dated before data it has already read.
    """

    def __init__(self, source: Clock, floor: datetime) -> None:
        self._source = source
        self._last = floor

    def tick(self) -> datetime:
        """The next change time: the source's time, or just after the previous tick."""
        now = self._source().astimezone(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        self._last = max(now, self._last + timedelta(milliseconds=1))
        return self._last

    def passed(self, moment: datetime) -> None:
        """Tick after ``moment`` from now on (a change dated in the past was stored)."""
        self._last = max(self._last, moment)
