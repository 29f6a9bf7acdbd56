"""Every FHIR date and dateTime form read into one aware instant and a precision.

Stores hold what collect accepted over the years, and FHIR R4 allows a date or dateTime at
year (``2025``), month (``2025-03``), day (``2025-03-03``) or second precision with a
fraction and an offset (``2025-03-03T18:00:00.5+00:00``); older data may also carry a time
without seconds or without an offset. A report that compares two of them must never meet a
naive and an aware datetime, so this module is the only place report code turns text into
time, and it always answers with an aware datetime or with None.

The rules (``docs/reports.md``, "Dates and times"):

- a value with an offset (``Z`` or ``+hh:mm``) is that instant;
- a time without an offset is Europe/London wall-clock time (the service's own clock);
- a partial date stands for the start of what it names, at midnight Europe/London:
  ``2025-03`` is 1 March 2025 00:00, ``2025-03-03`` is 3 March 00:00, and the precision
  says the hour (and for year/month, the day) is not known;
- a leap second (``:60``) is read as ``:59``; digits beyond microseconds are dropped;
- anything else (not a string, not a calendar date, out of the representable range) is
  None, and the caller counts it as unreadable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
Precision = Literal["year", "month", "day", "time"]

_FORM = re.compile(
    r"(?P<year>\d{4})"
    r"(?:-(?P<month>\d{2})"
    r"(?:-(?P<day>\d{2})"
    r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?"
    r"(?P<offset>Z|z|[+-]\d{2}:?\d{2})?"
    r")?)?)?"
)


@dataclass(frozen=True)
class When:
    """An aware instant and how much of it the source actually said."""

    at: datetime
    precision: Precision

    @property
    def has_time(self) -> bool:
        """True when the source gave a time of day."""
        return self.precision == "time"

    @property
    def has_day(self) -> bool:
        """True when the source named a calendar day (with or without a time)."""
        return self.precision in ("day", "time")

    @property
    def local_day(self) -> date:
        """The Europe/London calendar day of the instant."""
        return self.at.astimezone(LONDON).date()


def read_when(value: object) -> When | None:
    """The instant a FHIR date/dateTime/instant string names, or None if it names none."""
    if not isinstance(value, str):
        return None
    match = _FORM.fullmatch(value.strip())
    if match is None:
        return None
    try:
        return _when(match)
    except (ValueError, OverflowError):
        return None


def read_day(value: object) -> date | None:
    """The Europe/London calendar day of any FHIR date/dateTime form, or None."""
    when = read_when(value)
    return None if when is None else when.local_day


def _when(match: re.Match[str]) -> When:
    """Build the instant from the matched parts; raises ValueError for impossible dates."""
    parts = match.groupdict()
    year, month, day = int(parts["year"]), int(parts["month"] or 1), int(parts["day"] or 1)
    if parts["hour"] is None:
        precision: Precision = "day" if parts["day"] else "month" if parts["month"] else "year"
        at = datetime(year, month, day, tzinfo=LONDON)
    else:
        precision = "time"
        second = min(int(parts["second"] or 0), 59)
        micro = int((parts["fraction"] or "0")[:6].ljust(6, "0"))
        zone = _zone(parts["offset"])
        at = datetime(year, month, day, int(parts["hour"]), int(parts["minute"]), second, micro)
        at = at.replace(tzinfo=zone)
    at.astimezone(UTC)  # out-of-range instants fail here, not in a report
    at.astimezone(LONDON)
    return When(at=at, precision=precision)


def _zone(offset: str | None) -> timezone | ZoneInfo:
    """The offset as a fixed zone, or Europe/London when the value has none."""
    if offset is None:
        return LONDON
    if offset in ("Z", "z"):
        return UTC
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 14 or minutes > 59:
        raise ValueError("offset out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))
