"""HL7 dates and times as ISO 8601, using hl7apy's data dictionary to know where they are.

A mapping reads dates with the ``date`` and ``utc_timestamp`` transforms, which take ISO
8601. HL7 writes ``20261103`` and ``202611030915+0000``, and only the message version's
data dictionary says which components hold one. hl7apy ships those dictionaries for 2.1
to 2.8.2, so ``date_positions`` asks it once per (version, segment) and caches the answer:
the hot decode path then only converts the few components listed.

A time without an offset is in the sender's local time zone (HL7 v2 ch. 2A, DTM), so it gets
that zone's offset for the instant (BST-aware for Europe/London). Every precision from the
day to the ten-thousandth of a second is read, with or without an offset. Anything that is
not a whole, real date (``198503``, ``20261332``) is left as the sender wrote it: the
mapping's transform then refuses it and the record is quarantined naming the field, rather
than guessed at here. A field that means a calendar date (date of birth) may still arrive as
a DTM: the mapping reads it with ``calendar_date``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from hl7apy import load_reference
from hl7apy.exceptions import ChildNotFound

#: versions hl7apy has dictionaries for; any other version is read with 2.5's
KNOWN_VERSIONS = frozenset(
    {"2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8", "2.8.1", "2.8.2"}
)
FALLBACK_VERSION = "2.5"
_DATE_TYPES = frozenset({"DT", "DTM"})
#: DTM to the day or finer (ch. 2A: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]); a
#: fraction only after seconds, ASCII digits only. Coarser (YYYY, YYYYMM) stays as sent.
_DTM = re.compile(
    r"(?P<date>[0-9]{8})"
    r"(?:(?P<hour>[0-9]{2})(?:(?P<minute>[0-9]{2})(?:(?P<second>[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]{1,4}))?)?)?)?"
    r"(?P<offset>[+-][0-9]{4})?"
)

#: field number -> the component numbers (1-based) that hold a DT or DTM
Positions = Mapping[int, frozenset[int]]


@functools.lru_cache(maxsize=4096)
def date_positions(version: str, segment_id: str) -> Positions:
    """Where ``segment_id`` holds dates in ``version`` (empty for Z- and unknown segments)."""
    version = version if version in KNOWN_VERSIONS else FALLBACK_VERSION
    try:
        structure = load_reference(segment_id, "Segment", version)
    except (ChildNotFound, KeyError, ValueError):
        return {}
    found: dict[int, frozenset[int]] = {}
    for number, child in enumerate(structure[1], 1):
        components = _date_components(child[1])
        if components:
            found[number] = components
    return found


def _date_components(field: Any) -> frozenset[int]:
    """Component numbers of a field reference (hl7apy's nested tuples) that hold dates."""
    kind, children, datatype = field[0], field[1], field[2]
    if kind == "leaf":
        return frozenset({1}) if datatype in _DATE_TYPES else frozenset()
    found: set[int] = set()
    for number, component in enumerate(children or (), 1):
        leaf_type = component[1][2] if component[1][0] == "leaf" else None
        if leaf_type in _DATE_TYPES or (datatype == "TS" and number == 1):
            found.add(number)
    return frozenset(found)


def iso(value: str, zone: ZoneInfo) -> str:
    """``value`` (HL7 DT or DTM) as ISO 8601, or unchanged when it is not a whole date."""
    if len(value) > _LONGEST:  # cannot match, and keeps long hostile text out of the cache
        return value
    return _iso(value, zone)


#: the longest text ``_DTM`` can match: 8 + 6 + ".ffff" + "+hhmm"
_LONGEST = 24


@functools.lru_cache(maxsize=16384)
def _iso(value: str, zone: ZoneInfo) -> str:
    """``iso`` for one value; cached, since a feed repeats its dates (and dates of birth)."""
    match = _DTM.fullmatch(value)
    if match is None:
        return value
    try:
        day = date(int(value[:4]), int(value[4:6]), int(value[6:8]))
        if match["hour"] is None:
            return day.isoformat()
        return _moment(day, match, zone).isoformat()
    except ValueError:
        return value


def _moment(day: date, match: re.Match[str], zone: ZoneInfo) -> datetime:
    hour, minute, second, fraction, offset = match.group(
        "hour", "minute", "second", "fraction", "offset"
    )
    return datetime(
        day.year,
        day.month,
        day.day,
        int(hour),
        int(minute or 0),
        int(second or 0),
        int((fraction or "").ljust(6, "0")),
        tzinfo=zone if offset is None else _fixed_offset(offset),
    )


@functools.lru_cache(maxsize=256)
def _fixed_offset(offset: str) -> timezone:
    """``+hhmm``/``-hhmm`` as a fixed zone (a feed uses one or two), refusing out-of-range."""
    hours, minutes = int(offset[1:3]), int(offset[3:5])
    if hours > 14 or minutes > 59:
        raise ValueError("offset out of range")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if offset[0] == "-" else delta)


def hl7_timestamp(moment: datetime) -> str:
    """An aware datetime as an HL7 DTM to the second with its offset (``20261110193500+0000``)."""
    return moment.strftime("%Y%m%d%H%M%S%z")
