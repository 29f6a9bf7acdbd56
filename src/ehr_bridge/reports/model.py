"""The read model the reports compute from: one ``Episode`` per referral, FHIR-free.

Reports never see FHIR or note text. The loader (``reports.load``) turns a referral's
stored resources into an ``Episode``: dates, data-set codes, score totals and, for each
session note, only the counts of the configured governance phrases. Every measure is then
a pure function of episodes, so the hand-computed fixture cohort can drive the same
functions the CLI uses without a database.

Times are compared in Europe/London, the clock the service and its standards use, so a
session stored with a UTC offset still lands in the right hour and on the right day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time

from ehr_bridge.domain.codes import ATTENDED_CODES
from ehr_bridge.reports.times import LONDON, Precision

#: AppType codes NHSE counts as treatment appointments (02 treatment, 03 assessment and
#: treatment, 05 review and treatment)
TREATMENT_APPOINTMENT_TYPES: frozenset[str] = frozenset({"02", "03", "05"})
#: AttendOrDNACode "did not attend"
DID_NOT_ATTEND = "3"
OFFICE_OPENS = time(9, 0)
OFFICE_CLOSES = time(17, 0)


def attendance_code(raw: str | None) -> str | None:
    """AttendOrDNACode without zero padding (submissions mix '5' and '05')."""
    if raw is None:
        return None
    code = raw.strip().lstrip("0")
    return code or None


def appointment_type_code(raw: str | None) -> str | None:
    """AppType as two digits ('2' and '02' are the same code)."""
    if raw is None or not raw.strip():
        return None
    return raw.strip().zfill(2)


def problem_code(raw: str | None) -> str | None:
    """ICD-10 in the data set's form: no dot, no spaces, upper case (``f41.0`` -> ``F410``)."""
    if raw is None:
        return None
    return "".join(raw.split()).replace(".", "").upper() or None


@dataclass(frozen=True)
class Period:
    """Closed range of days; an open end (None) means unbounded on that side."""

    first: date | None = None
    last: date | None = None

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, date):
            return False
        if self.first is not None and day < self.first:
            return False
        return self.last is None or day <= self.last

    def label(self) -> str:
        """Human form for headings: ``2025-01-01 to 2025-06-30`` or ``all dates``."""
        if self.first is None and self.last is None:
            return "all dates"
        start = self.first.isoformat() if self.first else "the start"
        end = self.last.isoformat() if self.last else "today"
        return f"{start} to {end}"


@dataclass(frozen=True)
class Score:
    """One total score of one measure (by measure key), when it was completed."""

    measure: str
    value: float
    at: datetime
    precision: Precision = "time"


@dataclass(frozen=True)
class Session:
    """One care contact: when, what kind, attendance, therapist and its notes' phrase counts.

    ``notes`` holds one mapping per session note, phrase -> occurrences; never the text.
    """

    id: str
    start: datetime
    appointment_type: str | None
    attendance: str | None
    therapist: str | None = None
    notes: tuple[Mapping[str, int], ...] = ()
    #: how much of ``start`` the source gave: a date-only start is midnight with no time
    precision: Precision = "time"

    @property
    def has_time(self) -> bool:
        """True when the start has a time of day (hour figures need one)."""
        return self.precision == "time"

    @property
    def local_start(self) -> datetime:
        """The start in Europe/London (naive starts are taken as already local)."""
        if self.start.tzinfo is None:
            return self.start.replace(tzinfo=LONDON)
        return self.start.astimezone(LONDON)

    @property
    def day(self) -> date:
        """The local calendar day of the session."""
        return self.local_start.date()

    @property
    def attended(self) -> bool:
        """Attended on time or late but seen (AttendOrDNACode 5 or 6)."""
        return attendance_code(self.attendance) in ATTENDED_CODES

    @property
    def did_not_attend(self) -> bool:
        """AttendOrDNACode 3."""
        return attendance_code(self.attendance) == DID_NOT_ATTEND

    @property
    def treatment(self) -> bool:
        """A treatment appointment by AppType (02, 03, 05), attended or not."""
        return appointment_type_code(self.appointment_type) in TREATMENT_APPOINTMENT_TYPES

    @property
    def in_office_hours(self) -> bool:
        """Starts Monday-Friday at or after 09:00 and before 17:00, local time."""
        local = self.local_start
        return local.weekday() < 5 and OFFICE_OPENS <= local.time() < OFFICE_CLOSES


@dataclass(frozen=True)
class Unreadable:
    """A stored resource a report could not use: its reference and the field at fault.

    Only internal ids and field paths, never a value, so it can be printed and exported.
    """

    resource: str
    field: str


@dataclass(frozen=True)
class Episode:
    """One referral as the reports see it.

    ``ended`` is the end of the provider's EpisodeOfCare (the referral ended); ``received``
    is the trust's ReferralRequestReceivedDate (ServiceRequest.authoredOn).
    """

    referral_id: str
    trust_referral_id: str
    received: date
    presenting_problem: str | None = None
    sessions: tuple[Session, ...] = ()
    scores: tuple[Score, ...] = ()
    ended: date | None = None
    end_code: str | None = None
    #: resources of this referral that could not be read (counted in data quality)
    unreadable: tuple[Unreadable, ...] = ()
    #: resources dated to a year or a month only, read as the start of that year or month
    imprecise: tuple[str, ...] = ()
    #: total scores held by collect until their items arrive: unchecked, so not in ``scores``
    awaiting_items: int = 0

    @property
    def attended_treatment_sessions(self) -> tuple[Session, ...]:
        """Attended treatment contacts, in time order."""
        chosen = [s for s in self.sessions if s.attended and s.treatment]
        return tuple(sorted(chosen, key=lambda s: s.local_start))

    @property
    def first_treatment_day(self) -> date | None:
        """Local day of the first attended treatment session (the end of the wait)."""
        sessions = self.attended_treatment_sessions
        return sessions[0].day if sessions else None

    @property
    def finished_treatment(self) -> bool:
        """Ended with at least two attended treatment sessions (a finished course)."""
        return self.ended is not None and len(self.attended_treatment_sessions) >= 2

    def problem_code(self) -> str | None:
        """The ICD-10 presenting problem without dots, upper case (F41.1 -> F411)."""
        return problem_code(self.presenting_problem)


@dataclass(frozen=True)
class Rate:
    """A count over its denominator; ``value`` is None when the denominator is zero."""

    count: int
    denominator: int

    @property
    def value(self) -> float | None:
        """The fraction, or None for 0/0 (never shown as 0%)."""
        return self.count / self.denominator if self.denominator else None

    def percent(self) -> str:
        """``3 of 8 (37.5%)``, or ``0 of 0 (n/a)``."""
        value = self.value
        shown = "n/a" if value is None else f"{value * 100:.1f}%"
        return f"{self.count} of {self.denominator} ({shown})"
