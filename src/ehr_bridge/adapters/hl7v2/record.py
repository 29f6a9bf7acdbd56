"""An HL7 v2 message as the JSON record a mapping reads with JMESPath.

The shape is regular, so every path is written the same way::

    {"MSH": [{"3": [{"1": "IAPTUS"}], "9": [{"1": "REF", "2": "I12"}], ...}],
     "PID": [{"3": [{"1": "9434765919", "4": "NHS", "5": "NH"}, {...}], ...}]}

a segment id maps to its occurrences; an occurrence maps field numbers to the field's
repetitions; a repetition maps component numbers to text. ``PID-3.1`` of the first PID
and first repetition is ``PID[0]."3"[0]."1"``. A component with subcomponents is itself a
map of subcomponent numbers (``CX-4`` ``NHS&2.16.840...&ISO`` -> ``{"1": "NHS", ...}``).
Empty fields and components are left out, so a missing value is JMESPath ``null``; HL7's
explicit null ``""`` is left out too (every REF^I12 carries the whole referral). Values are
unescaped, and DT/DTM components (``dates``) are ISO 8601.

This is the read path of the throughput target, so it splits strings with ``str.split``
and decodes only the segments asked for (``segments``); MSH is always decoded. A segment
with no escape and no subcomponent character (most of them) is built by splitting alone;
only the others go through unescaping and subcomponent maps. hl7apy's
full parse of a small message runs at about 150 messages per second: far too slow here.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from zoneinfo import ZoneInfo

from ehr_bridge.adapters.hl7v2.dates import Positions, date_positions, iso
from ehr_bridge.adapters.hl7v2.er7 import Delimiters, delimiters, unescape

JsonDict = dict[str, Any]
_KEYS = tuple(str(n) for n in range(1000))  # "0", "1", ... without str() per value
_EMPTY = '""'  # HL7's explicit null: left out like an empty value


def decode(segments: list[str], zone: ZoneInfo, wanted: Collection[str] | None = None) -> JsonDict:
    """One message (its segment strings, MSH first) as the mapping's record.

    Raises:
        Er7Error: the header does not declare usable delimiters (names MSH-2).
    """
    d = delimiters(segments[0])
    version = _version(segments[0], d)
    record: JsonDict = {}
    for text in segments:
        segment_id = text[:3]
        if wanted is not None and segment_id not in wanted and segment_id != "MSH":
            continue
        occurrence = _fields(text, d)
        positions = date_positions(version, segment_id)
        if positions:
            _dates(occurrence, positions, zone)
        if segment_id in record:
            record[segment_id].append(occurrence)
        else:
            record[segment_id] = [occurrence]
    return record


def _keys(count: int) -> tuple[str, ...]:
    """Number keys for ``count`` parts; a hostile segment may have more than the table holds."""
    return _KEYS if count < len(_KEYS) else tuple(str(n) for n in range(count + 1))


def _fields(text: str, d: Delimiters) -> JsonDict:
    """One segment occurrence: field number -> repetitions."""
    parts = text.split(d.field)
    occurrence: JsonDict = {}
    body = text
    if parts[0] == "MSH":  # MSH-1 is the separator itself, so MSH-n is part n - 1
        occurrence["1"], occurrence["2"] = [{"1": d.field}], [{"1": parts[1]}]
        body = text[len(parts[1]) + 5 :]  # the fields after MSH-2's encoding characters
        parts = ["MSH", "", "", *parts[2:]]
    if d.escape in body or d.subcomponent in body:
        _general(occurrence, parts, d)
    else:
        _plain(occurrence, parts, d.repetition, d.component)
    return occurrence


def _plain(occurrence: JsonDict, parts: list[str], repetition: str, component: str) -> None:
    """Fields of a segment without escapes or subcomponents: split only (the hot path)."""
    keys = _keys(len(parts))
    for number in range(1, len(parts)):
        raw = parts[number]
        if not raw or raw == _EMPTY:
            continue
        if repetition in raw:
            occurrence[keys[number]] = [
                _plain_components(piece, component) for piece in raw.split(repetition)
            ]
        elif component in raw:
            occurrence[keys[number]] = [_plain_components(raw, component)]
        else:
            occurrence[keys[number]] = [{"1": raw}]


def _plain_components(raw: str, component: str) -> JsonDict:
    if component not in raw:
        return {"1": raw} if raw and raw != _EMPTY else {}
    pieces = raw.split(component)
    keys = _keys(len(pieces))
    return {keys[n]: p for n, p in enumerate(pieces, 1) if p and p != _EMPTY}


def _general(occurrence: JsonDict, parts: list[str], d: Delimiters) -> None:
    """Fields of a segment that may hold escapes or subcomponents."""
    keys = _keys(len(parts))
    repetition = d.repetition
    for number in range(1, len(parts)):
        raw = parts[number]
        if raw and raw != _EMPTY:
            pieces = raw.split(repetition) if repetition in raw else (raw,)
            occurrence[keys[number]] = [_components(piece, d) for piece in pieces]


def _components(raw: str, d: Delimiters) -> JsonDict:
    """One repetition: component number -> text (or a map of subcomponents)."""
    component, subcomponent, escape = d.component, d.subcomponent, d.escape
    if component not in raw and subcomponent not in raw:
        if not raw or raw == _EMPTY:
            return {}
        return {"1": unescape(raw, d) if escape in raw else raw}
    out: JsonDict = {}
    parts = raw.split(component)
    keys = _keys(len(parts))
    for number, part in enumerate(parts, 1):
        if not part or part == _EMPTY:
            continue
        if subcomponent in part:
            subs = part.split(subcomponent)
            sub_keys = _keys(len(subs))
            out[keys[number]] = {
                sub_keys[i]: unescape(s, d) for i, s in enumerate(subs, 1) if s and s != _EMPTY
            }
        else:
            out[keys[number]] = unescape(part, d) if escape in part else part
    return out


def _dates(occurrence: JsonDict, positions: Positions, zone: ZoneInfo) -> None:
    for number, components in positions.items():
        repetitions = occurrence.get(_KEYS[number])
        if repetitions is None:
            continue
        for repetition in repetitions:
            for component in components:
                value = repetition.get(_KEYS[component])
                if isinstance(value, str):
                    repetition[_KEYS[component]] = iso(value, zone)


def _version(msh: str, d: Delimiters) -> str:
    parts = msh.split(d.field, 12)
    if len(parts) <= 11:
        return ""
    return parts[11].split(d.component, 1)[0]


def message_type(record: JsonDict) -> str:
    """MSH-9 as ``REF^I12`` (code and trigger event), or ``""`` when the header has none."""
    msh = record.get("MSH", [{}])[0]
    value = (msh.get("9") or [{}])[0]
    return "^".join(p for p in (value.get("1", ""), value.get("2", "")) if p)


def control_id(record: JsonDict) -> str:
    """MSH-10, the sender's message control id, or ``""``."""
    value = (record.get("MSH", [{}])[0].get("10") or [{}])[0].get("1", "")
    return value if isinstance(value, str) else ""
