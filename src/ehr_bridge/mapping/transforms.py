"""The closed registry of named transforms a mapping rule may apply.

Mapping files are data an integrator edits, so they must never run code: a rule can only
name one of the transforms below. Each one accepts a documented input shape and raises
:class:`TransformError` with a value-free reason otherwise, so a bad record becomes a
quarantined ``MappingError`` that names the rule, never the patient data. ``None`` never
reaches a transform (the engine passes it straight through), so every transform can assume
it has a value.

Parameterised transforms (``zero_pad``, ``remove_chars``, ``parse_date``, ``format_date``,
``coding_code``, ``measure_code``, ``extension_value``) check their arguments when the
mapping loads, so a typo fails at start-up rather than mid-run. Code system and extension
URLs can be written as short aliases resolved from ``domain.codes``. Date formats are
strftime patterns, which read and write text only: a mapping still cannot run code.
``measure_code`` and ``measure_concept`` read the measure catalogue
(``domain.measures``), so a total is recognised by any code the catalogue knows and the
trust gets codes from the catalogue, never whatever the provider happened to send.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from ehr_bridge.domain import codes
from ehr_bridge.domain.measures import Measure, measure_coding, measure_for_code

JsonDict = dict[str, Any]
TransformFn = Callable[[Any], Any]

#: short names a mapping may use for a code system URL (``coding_code: {system: ...}``)
SYSTEM_ALIASES: Mapping[str, str] = {
    "snomed": codes.SNOMED,
    "loinc": codes.LOINC,
    "icd10": codes.ICD10,
    "attendance": codes.DATASET_ATTENDANCE,
    "appointment_type": codes.DATASET_APPOINTMENT_TYPE,
    "consultation_mechanism": codes.DATASET_CONSULTATION_MECHANISM,
    "end_code": codes.DATASET_END_CODE,
    "source_of_referral": codes.DATASET_SOURCE_OF_REFERRAL,
    "outcome_measure": codes.OUTCOME_MEASURE_SYSTEM,
    "nhs_number_verification": codes.NHS_NUMBER_VERIFICATION_SYSTEM,
    "observation_category": codes.OBSERVATION_CATEGORY,
}

#: short names a mapping may use for an extension URL (``extension_value: {url: ...}``)
EXTENSION_ALIASES: Mapping[str, str] = {
    "attendance": codes.ATTENDANCE_EXTENSION,
    "end_code": codes.END_CODE_EXTENSION,
    "source_of_referral": codes.SOURCE_OF_SERVICE_REQUEST_EXTENSION,
    "nhs_number_verification": codes.NHS_NUMBER_VERIFICATION_EXTENSION,
}

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DIGITS = re.compile(r"\d+")


class TransformError(Exception):
    """A transform refused its input; the reason states the rule broken, never the value."""


class TransformArgsError(ValueError):
    """A transform's arguments in a mapping file are wrong; the loader makes it a ConfigError."""


@dataclass(frozen=True)
class Transform:
    """One registry entry: ``build`` checks the file's arguments once and returns the function."""

    name: str
    summary: str
    params: tuple[str, ...]
    build: Callable[[JsonDict], TransformFn]


@dataclass(frozen=True)
class BoundTransform:
    """A transform with its arguments already checked, ready to run on every record."""

    name: str
    fn: TransformFn
    #: the arguments as the mapping file wrote them (aliases unresolved), for the toolkit
    args: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, value: Any) -> Any:
        """Run the transform; ``TransformError`` says why the value was refused."""
        return self.fn(value)


# --- text --------------------------------------------------------------------------------
def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TransformError("expected text")
    return value


def _code_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TransformError("expected a code (text or whole number)")
    return str(value)


def _strip(value: Any) -> str | None:
    return _text(value).strip() or None


def _upper(value: Any) -> str:
    return _text(value).upper()


def _lower(value: Any) -> str:
    return _text(value).lower()


def _remove_spaces(value: Any) -> str | None:
    return "".join(_text(value).split()) or None


def _split_words(value: Any) -> list[str] | None:
    return _text(value).split() or None


def _string(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TransformError("expected text or a number")
    return str(value)


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TransformError("expected a number")
    try:
        number = float(value)
    except ValueError:
        raise TransformError("expected a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise TransformError("expected a finite number")
    return int(number) if number.is_integer() else number


def _strip_leading_zeros(value: Any) -> str:
    code = _code_text(value).strip()
    return (code.lstrip("0") or "0") if _DIGITS.fullmatch(code) else code


def _zero_pad(value: Any, *, width: int) -> str:
    code = _code_text(value).strip()
    return code.rjust(width, "0") if _DIGITS.fullmatch(code) else code


def _remove_chars(value: Any, *, chars: str) -> str | None:
    return _text(value).translate(str.maketrans("", "", chars)) or None


# --- dates and times ---------------------------------------------------------------------
@functools.cache
def _london() -> ZoneInfo:
    return ZoneInfo("Europe/London")


def _date(value: Any) -> str:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()  # the engine may put a Python date into the context
    text = _text(value).strip()
    try:
        if not _ISO_DATE.fullmatch(text):
            raise ValueError
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise TransformError("expected a date YYYY-MM-DD") from None


def _parse_date(value: Any, *, pattern: str) -> str:
    try:
        return datetime.strptime(_text(value).strip(), pattern).date().isoformat()
    except ValueError:
        raise TransformError("expected a date in the mapping's format") from None


def _format_date(value: Any, *, pattern: str) -> str:
    return date.fromisoformat(_date(value)).strftime(pattern)


def _aware(value: Any) -> datetime:
    try:
        moment = (
            value if isinstance(value, datetime) else datetime.fromisoformat(_text(value).strip())
        )
    except ValueError:
        raise TransformError("expected an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise TransformError("timestamp has no UTC offset")
    return moment


def _utc_timestamp(value: Any) -> str:
    return _aware(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _london_date(value: Any) -> str:
    return _aware(value).astimezone(_london()).date().isoformat()


#: what ``calendar_date`` reads besides YYYY-MM-DD: an ISO 8601 timestamp, to the minute or finer
_ISO_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?"
)
_NOT_A_CALENDAR_DATE = "expected a calendar date (YYYY-MM-DD or a timestamp)"


def _calendar_date(value: Any) -> str:
    """The day a field that means a date (a date of birth) names, however it was written.

    HL7 sends such fields as DT or as DTM of any precision. A date stays as it is; a
    timestamp gives its Europe/London date, except exactly midnight, which is a date
    written as a timestamp (``19850314000000+0100``): its date as written, since moving a
    date of birth to London time would put it on the day before.
    """
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, datetime):
        moment = value
    else:
        text = _text(value).strip()
        if _ISO_DATE.fullmatch(text):
            return _date(text)
        if not _ISO_TIMESTAMP.fullmatch(text):
            raise TransformError(_NOT_A_CALENDAR_DATE)
        moment = _aware(text)
    if moment.tzinfo is None:
        raise TransformError("timestamp has no UTC offset")
    if moment.time() == time(0):
        return moment.date().isoformat()
    return moment.astimezone(_london()).date().isoformat()


def _london_time(value: Any) -> str:
    return _aware(value).astimezone(_london()).strftime("%H:%M")


def _period_minutes(value: Any) -> int:
    if not isinstance(value, dict) or value.get("start") is None or value.get("end") is None:
        raise TransformError("expected a FHIR Period with start and end")
    seconds = (_aware(value["end"]) - _aware(value["start"])).total_seconds()
    if seconds < 0:
        raise TransformError("period ends before it starts")
    return round(seconds / 60)


# --- FHIR shapes -------------------------------------------------------------------------
def _base64_text(value: Any) -> str:
    try:
        return base64.b64decode(_text(value), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise TransformError("expected base64-encoded UTF-8 text") from None


def _codings(value: Any) -> list[JsonDict]:
    found: list[JsonDict] = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict) and isinstance(item.get("coding"), list):
            found.extend(c for c in item["coding"] if isinstance(c, dict))
        elif isinstance(item, dict) and "system" in item:
            found.append(item)
    return found


def _coding_code(value: Any, *, system: str) -> Any:
    return next((c.get("code") for c in _codings(value) if c.get("system") == system), None)


def _named_measure(value: Any) -> Measure | None:
    """The catalogue measure the codings name (SNOMED CT, LOINC total or our key), if any.

    A provider may code a total any of those ways, in any order and alongside codings we
    do not know (a LOINC panel code names no measure). Codings naming two different
    measures are refused rather than guessed between.
    """
    found = {
        measure.key: measure
        for c in _codings(value)
        if isinstance(c.get("system"), str) and isinstance(c.get("code"), str)
        for measure in [measure_for_code(c["system"], c["code"].strip())]
        if measure is not None
    }
    if len(found) > 1:
        raise TransformError("codings name more than one outcome measure")
    return next(iter(found.values()), None)


def _measure_code(value: Any, *, code: str) -> str | None:
    """The code the mapping asks for, from the catalogue, not the one the provider sent."""
    measure = _named_measure(value)
    return _MEASURE_CODES[code](measure) if measure is not None else None


def _measure_concept(value: Any) -> JsonDict | None:
    """A total's CodeableConcept rebuilt from the catalogue: SNOMED CT, LOINC total, our key.

    Whatever the provider sent (a panel code, a display of its own, a SNOMED code alone),
    the trust gets the national codings the catalogue holds for the measure, and only those.
    """
    measure = _named_measure(value)
    if measure is None:
        return None
    return {"coding": measure_coding(measure), "text": f"{measure.name} total score"}


_MEASURE_CODES: Mapping[str, Callable[[Measure], str | None]] = {
    "key": lambda m: m.key,
    "snomed": lambda m: m.snomed,
    "loinc": lambda m: m.loinc,
}


def _extension_value(value: Any, *, url: str) -> Any:
    items = value if isinstance(value, list) else [value]
    ext = next((e for e in items if isinstance(e, dict) and e.get("url") == url), None)
    if ext is None:
        return None
    if "valueCoding" in ext or "valueCodeableConcept" in ext:
        codings = _codings(ext.get("valueCoding") or ext.get("valueCodeableConcept"))
        return codings[0].get("code") if codings else None
    keys = [k for k in ext if k.startswith("value")]
    return ext[keys[0]] if keys else None


# --- argument checking -------------------------------------------------------------------
def _check_args(args: JsonDict, params: tuple[str, ...]) -> None:
    unknown = sorted(set(args) - set(params))
    if unknown:
        allowed = ", ".join(params) or "none"
        raise TransformArgsError(f"unknown argument(s) {', '.join(unknown)}; allowed: {allowed}")
    missing = [p for p in params if p not in args]
    if missing:
        raise TransformArgsError(f"missing argument(s) {', '.join(missing)}")


def _resolve_url(raw: Any, aliases: Mapping[str, str], what: str) -> str:
    if isinstance(raw, str) and raw in aliases:
        return aliases[raw]
    if isinstance(raw, str) and raw.startswith(("http://", "https://")):
        return raw
    names = ", ".join(sorted(aliases))
    raise TransformArgsError(f"{what} must be a URL or one of the aliases: {names}")


def _plain(name: str, summary: str, fn: TransformFn) -> Transform:
    def build(args: JsonDict) -> TransformFn:
        _check_args(args, ())
        return fn

    return Transform(name, summary, (), build)


def _build_zero_pad(args: JsonDict) -> TransformFn:
    _check_args(args, ("width",))
    width = args["width"]
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= 10:
        raise TransformArgsError("width must be a whole number 1..10")
    return functools.partial(_zero_pad, width=width)


def _build_remove_chars(args: JsonDict) -> TransformFn:
    _check_args(args, ("chars",))
    chars = args["chars"]
    if not isinstance(chars, str) or not chars:
        raise TransformArgsError("chars must be non-empty text: every character in it is removed")
    return functools.partial(_remove_chars, chars=chars)


def _date_pattern(args: JsonDict) -> str:
    """A strftime pattern naming day, month and year (``%d/%m/%Y``), checked once."""
    _check_args(args, ("format",))
    pattern = args["format"]
    if not isinstance(pattern, str) or not all(d in pattern for d in ("%d", "%m", "%Y")):
        raise TransformArgsError("format must be a strftime pattern with %d, %m and %Y")
    probe = date(2026, 12, 31)
    try:
        if datetime.strptime(probe.strftime(pattern), pattern).date() != probe:
            raise ValueError
    except (ValueError, re.error):  # strptime compiles the pattern to a regex
        raise TransformArgsError("format does not read back what it writes") from None
    return pattern


def _build_parse_date(args: JsonDict) -> TransformFn:
    return functools.partial(_parse_date, pattern=_date_pattern(args))


def _build_format_date(args: JsonDict) -> TransformFn:
    return functools.partial(_format_date, pattern=_date_pattern(args))


def _build_coding_code(args: JsonDict) -> TransformFn:
    _check_args(args, ("system",))
    system = _resolve_url(args["system"], SYSTEM_ALIASES, "system")
    return functools.partial(_coding_code, system=system)


def _build_measure_code(args: JsonDict) -> TransformFn:
    _check_args(args, ("code",))
    code = args["code"]
    if code not in _MEASURE_CODES:
        raise TransformArgsError(f"code must be one of: {', '.join(_MEASURE_CODES)}")
    return functools.partial(_measure_code, code=code)


def _build_extension_value(args: JsonDict) -> TransformFn:
    _check_args(args, ("url",))
    url = _resolve_url(args["url"], EXTENSION_ALIASES, "url")
    return functools.partial(_extension_value, url=url)


_ENTRIES: tuple[Transform, ...] = (
    _plain("strip", "trim whitespace; blank text becomes null", _strip),
    _plain("upper", "upper-case text", _upper),
    _plain("lower", "lower-case text", _lower),
    _plain("remove_spaces", "delete all whitespace (e.g. '999 000 1234')", _remove_spaces),
    _plain("split_words", "split text on whitespace into a list", _split_words),
    _plain("string", "a number or text as text (e.g. a version 3 -> '3')", _string),
    _plain("number", "a number or numeric text; whole values become integers", _number),
    _plain("strip_leading_zeros", "all-digit code without leading zeros", _strip_leading_zeros),
    Transform("zero_pad", "all-digit code left-padded with zeros", ("width",), _build_zero_pad),
    Transform(
        "remove_chars",
        "delete every listed character (e.g. 'F41.1' -> 'F411')",
        ("chars",),
        _build_remove_chars,
    ),
    _plain("date", "a YYYY-MM-DD date, checked", _date),
    Transform(
        "parse_date",
        "a date in a stated format (e.g. %d/%m/%Y) -> YYYY-MM-DD",
        ("format",),
        _build_parse_date,
    ),
    Transform(
        "format_date",
        "a YYYY-MM-DD date -> the stated format (e.g. %d/%m/%Y)",
        ("format",),
        _build_format_date,
    ),
    _plain("utc_timestamp", "timestamp with offset -> UTC 'YYYY-MM-DDTHH:MM:SSZ'", _utc_timestamp),
    _plain("london_date", "timestamp with offset -> Europe/London date", _london_date),
    _plain("london_time", "timestamp with offset -> Europe/London HH:MM", _london_time),
    _plain(
        "calendar_date",
        "a date, or a timestamp's Europe/London date (midnight: the date as written)",
        _calendar_date,
    ),
    _plain("period_minutes", "FHIR Period -> whole minutes between start and end", _period_minutes),
    _plain("base64_text", "base64 attachment data -> UTF-8 text", _base64_text),
    Transform(
        "coding_code", "code of the first coding in a system", ("system",), _build_coding_code
    ),
    Transform(
        "measure_code",
        "the catalogue's key, SNOMED CT or LOINC total code of the measure any coding names",
        ("code",),
        _build_measure_code,
    ),
    _plain(
        "measure_concept",
        "the catalogue's CodeableConcept (SNOMED CT, LOINC total, our key) of the measure",
        _measure_concept,
    ),
    Transform(
        "extension_value", "value of the extension with a URL", ("url",), _build_extension_value
    ),
)

#: the closed registry: a mapping rule can name only these
TRANSFORMS: Mapping[str, Transform] = {t.name: t for t in _ENTRIES}


def bind(name: str, args: JsonDict) -> BoundTransform:
    """Check a named transform's arguments once, at load time, and return it ready to run.

    Raises:
        KeyError: the name is not in the registry (the loader suggests a close one).
        TransformArgsError: the arguments do not fit the transform.
    """
    return BoundTransform(name, TRANSFORMS[name].build(args), dict(args))
