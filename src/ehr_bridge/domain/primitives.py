r"""A fast check of the FHIR rules on resources *our own builders* make (the pull hot path).

Why not the model: running fhir.resources' pydantic ``model_validate`` on the Patient and
ServiceRequest we have just built cost about 0.3 ms per referral, most of the pull
budget, and almost all of it re-proved the shape our builders write by construction.
What can still go wrong is the *values* the builders copy in from trust data (a name that
is only a vertical tab, a code with a double space). So each built resource is walked
against a shape that lists exactly the elements our referral builders emit, with each
element's FHIR type, and every primitive value is checked with the rule fhir.resources
enforces for that type:

- string: a JSON string with at least one character that is not vertical tab, form feed
  or another Unicode White_Space character outside space, tab, CR and LF (fhir_core's
  ``[ \r\n\t\S]+``, searched with the Rust regex engine's Unicode ``\s``), and no
  lone surrogates (pydantic cannot take them);
- code: ``^[^\s]+(\s[^\s]+)*$``, with the same Unicode ``\s`` (which, unlike Python's,
  does not include U+001C..U+001F);
- id: ``[A-Za-z0-9\-.]``, 1 to 64 characters (FHIR's limit; fhir_core allows 255);
- uri and canonical: non-empty, no whitespace (FHIR's rule; fhir_core's ``\S*`` accepts
  anything);
- date and dateTime: fhir_core's patterns, and a full date must be a calendar date.

The walk is stricter than the model in three ways our builders never trip: an element
the shape does not list is refused (a builder change must extend the shape, and the
tests below then compare it with the model again), and nulls and empty arrays or objects
are refused (FHIR's ele-1; the model lets them through, but they are not valid FHIR
JSON). Required elements (``ServiceRequest.status``, ``intent``, ``subject``,
``Extension.url``) are required here as in the model.

What guards it: ``tests/domain/test_domain_primitives.py`` checks every primitive rule
against fhir_core's own types (exhaustively over the code points that matter, and with
hypothesis), checks each shape element against the fhir.resources model's type and
cardinality, and shows with hypothesis over hostile referral facts that this check
accepts built resources exactly when ``model_validate`` does. A failure raises
``RecordValidationError`` (code ``fhir``) naming the element path and the rule, never
the value. Input from outside (provider bundles) still goes through the model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ehr_bridge.errors import RecordValidationError

JsonDict = dict[str, Any]

#: Unicode White_Space (as the Rust regex engine behind pydantic reads ``\s``) less the
#: four a FHIR string may consist of; a string needs one character outside it
_NOT_CONTENT = "\x0b\x0c\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_WS = "\t\n\r " + _NOT_CONTENT
_SURROGATES = "\ud800-\udfff"
_STRING_CONTENT = re.compile(f"[^{_NOT_CONTENT}]")
_SURROGATE = re.compile(f"[{_SURROGATES}]")
_CODE = re.compile(f"[^{_WS}{_SURROGATES}]+(?:[{_WS}][^{_WS}{_SURROGATES}]+)*")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_URI = re.compile(f"[^{_WS}{_SURROGATES}]+")
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_DATE = re.compile(_YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?")
_DATE_TIME = re.compile(
    _YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
    r"(Z|([+\-])((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
_FULL_DATE_LENGTH = 10
_MAX_FRACTION_DIGITS = 6  # what ``datetime.fromisoformat`` reads; longer is refused

#: a primitive rule: None when the value passes, else the rule it breaks (never the value)
Rule = Callable[[Any], str | None]


def string(value: Any) -> str | None:
    """FHIR ``string`` as fhir_core enforces it."""
    if not isinstance(value, str):
        return "string must be a JSON string"
    if not value.isascii() and _SURROGATE.search(value):
        return "string must be valid Unicode"
    if _STRING_CONTENT.search(value) is None:
        return "string must have a character other than vertical space"
    return None


def code(value: Any) -> str | None:
    """FHIR ``code``: no leading, trailing or repeated whitespace."""
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        return "code must be tokens separated by single whitespace"
    return None


def id_(value: Any) -> str | None:
    """FHIR ``id``: letters, digits, '-' and '.', 1 to 64 characters."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        return "id must be 1-64 of A-Z a-z 0-9 - ."
    return None


def uri(value: Any) -> str | None:
    """FHIR ``uri`` and ``canonical``: non-empty, without whitespace."""
    if not isinstance(value, str) or not _URI.fullmatch(value):
        return "uri must be non-empty without whitespace"
    return None


def date_(value: Any) -> str | None:
    """FHIR ``date``: YYYY, YYYY-MM or a real YYYY-MM-DD, no time."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return "date must be YYYY, YYYY-MM or YYYY-MM-DD"
    if len(value) == _FULL_DATE_LENGTH and not _is_calendar_date(value):
        return "date must be a calendar date"
    return None


def date_time(value: Any) -> str | None:
    """FHIR ``dateTime``: a date as above, or a real date and time with a time zone."""
    if not isinstance(value, str) or not _DATE_TIME.fullmatch(value):
        return "dateTime must be a FHIR date or date-time with zone"
    if len(value) == _FULL_DATE_LENGTH and not _is_calendar_date(value):
        return "dateTime must be a calendar date"
    if len(value) > _FULL_DATE_LENGTH and not _is_date_time(value):
        return "dateTime must be a calendar date and time"
    return None


def _is_calendar_date(text: str) -> bool:
    """True for a YYYY-MM-DD that names a real day (the pattern allowed 02-31)."""
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_date_time(text: str) -> bool:
    """True for a pattern-valid date-time naming a real instant (leap second allowed)."""
    body, rest, fraction = text[:19].replace(":60", ":59"), text[19:], ""
    if rest.startswith("."):
        digits = len(rest) - len(rest.lstrip(".0123456789"))
        fraction, rest = rest[:digits], rest[digits:]
        if len(fraction) - 1 > _MAX_FRACTION_DIGITS:
            return False
    try:
        datetime.fromisoformat(body + fraction + ("+00:00" if rest == "Z" else rest))
    except ValueError:
        return False
    return True


# --- shapes -----------------------------------------------------------------------------
class _Invalid(Exception):
    """A rule broken at ``loc`` (element names and list indexes, innermost last)."""

    def __init__(self, rule: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(rule)
        self.rule = rule
        self.loc = loc


@dataclass(frozen=True, slots=True)
class Primitive:
    """A primitive element: its FHIR type name, its rule, and a pattern that suffices.

    A plain ``str`` that ``fast`` fully matches passes ``rule`` without running it (the
    common case: printable ASCII); anything else is judged by ``rule``. The walk below
    inlines that test, because a Python call per leaf was half of the check's cost.
    """

    fhir_type: str
    rule: Rule
    fast: re.Pattern[str]

    def check(self, value: Any) -> None:
        """Raise ``_Invalid`` with the rule's reason when ``value`` breaks it."""
        broken = self.rule(value)
        if broken is not None:
            raise _Invalid("null is not allowed" if value is None else broken)


@dataclass(frozen=True, slots=True)
class Element:
    """A complex FHIR element (or resource): the children our builders emit, by name."""

    name: str
    children: Mapping[str, Node]
    required: frozenset[str] = field(default_factory=frozenset)

    def check(self, value: Any) -> None:
        """Raise ``_Invalid`` unless ``value`` is a non-empty object of known children."""
        if value.__class__ is not dict or not value:
            raise _Invalid(f"{self.name} must be a non-empty object")
        children = self.children
        for key, item in value.items():
            node = children.get(key)
            if node is None:
                raise _Invalid(f"{self.name} has no element of this name here", (key,))
            if node.__class__ is Primitive and item.__class__ is str and node.fast.fullmatch(item):
                continue
            try:
                node.check(item)
            except _Invalid as bad:
                bad.loc = (key, *bad.loc)
                raise
        if self.required and not self.required <= value.keys():
            missing = min(self.required - value.keys())
            raise _Invalid(f"{self.name}.{missing} is required", (missing,))


@dataclass(frozen=True, slots=True)
class Many:
    """An array element: non-empty, every item of ``item``."""

    item: Node

    def check(self, value: Any) -> None:
        """Raise ``_Invalid`` unless ``value`` is a non-empty list of valid items."""
        if value.__class__ is not list or not value:
            raise _Invalid("array must be a non-empty list")
        node = self.item
        fast = node.fast if node.__class__ is Primitive else None
        for index, entry in enumerate(value):
            if fast is not None and entry.__class__ is str and fast.fullmatch(entry):
                continue
            try:
                node.check(entry)
            except _Invalid as bad:
                bad.loc = (index, *bad.loc)
                raise


Node = Element | Many | Primitive

#: printable ASCII (with tab, CR, LF) is always a valid FHIR string
_PRINTABLE = re.compile(r"[\t\n\r -~]+")
#: a year FHIR allows, a month and a day that every month has
_SAFE_DATE = re.compile(_YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])")

STRING = Primitive("string", string, _PRINTABLE)
CODE = Primitive("code", code, _CODE)
ID = Primitive("id", id_, _ID)
URI = Primitive("uri", uri, _URI)
CANONICAL = Primitive("canonical", uri, _URI)
DATE = Primitive("date", date_, _SAFE_DATE)
DATE_TIME = Primitive("dateTime", date_time, _SAFE_DATE)

CODING = Element("Coding", {"system": URI, "code": CODE, "display": STRING})
CODEABLE_CONCEPT = Element("CodeableConcept", {"coding": Many(CODING)})
EXTENSION = Element(
    "Extension",
    {"url": URI, "valueCodeableConcept": CODEABLE_CONCEPT},
    required=frozenset({"url"}),
)
IDENTIFIER = Element("Identifier", {"extension": Many(EXTENSION), "system": URI, "value": STRING})
REFERENCE = Element(
    "Reference", {"reference": STRING, "type": URI, "identifier": IDENTIFIER, "display": STRING}
)
META = Element("Meta", {"profile": Many(CANONICAL)})
HUMAN_NAME = Element("HumanName", {"use": CODE, "family": STRING, "given": Many(STRING)})
CONTACT_POINT = Element("ContactPoint", {"system": CODE, "value": STRING})
ADDRESS = Element("Address", {"use": CODE, "postalCode": STRING})


def _resource_type(name: str) -> Primitive:
    """``resourceType`` of a resource shape: exactly its own type name."""
    return Primitive(
        "resourceType",
        lambda value: None if value == name else "wrong resourceType",
        re.compile(re.escape(name)),
    )


#: the resources our referral builders make, as they make them
SHAPES: Mapping[str, Element] = {
    "Patient": Element(
        "Patient",
        {
            "resourceType": _resource_type("Patient"),
            "id": ID,
            "meta": META,
            "identifier": Many(IDENTIFIER),
            "name": Many(HUMAN_NAME),
            "gender": CODE,
            "birthDate": DATE,
            "telecom": Many(CONTACT_POINT),
            "address": Many(ADDRESS),
        },
    ),
    "ServiceRequest": Element(
        "ServiceRequest",
        {
            "resourceType": _resource_type("ServiceRequest"),
            "id": ID,
            "meta": META,
            "extension": Many(EXTENSION),
            "identifier": Many(IDENTIFIER),
            "status": CODE,
            "intent": CODE,
            "category": Many(CODEABLE_CONCEPT),
            "code": CODEABLE_CONCEPT,
            "subject": REFERENCE,
            "authoredOn": DATE_TIME,
            "performer": Many(REFERENCE),
            "reasonCode": Many(CODEABLE_CONCEPT),
        },
        required=frozenset({"status", "intent", "subject"}),
    ),
}


def has_shape(resource_type: str) -> bool:
    """True when ``check_built`` knows how our builders make this resource type."""
    return resource_type in SHAPES


def check_built(resource: JsonDict, *, path: str = "") -> JsonDict:
    """Check a resource our builders made against its shape; return it unchanged.

    Raises ``RecordValidationError`` (code ``fhir``) naming the element path below
    ``path`` and the rule; the value is never in the message.
    """
    kind = resource.get("resourceType")
    shape = SHAPES.get(kind) if isinstance(kind, str) else None
    if shape is None or not isinstance(kind, str):
        raise _error(path, ("resourceType",), "resourceType", "no built shape for this type")
    try:
        shape.check(resource)
    except _Invalid as bad:
        raise _error(path, bad.loc, kind, bad.rule) from None
    return resource


def _error(prefix: str, loc: tuple[str | int, ...], kind: str, rule: str) -> RecordValidationError:
    """The quarantine reason: the element path and the rule, as ``validate_resource`` words it."""
    return RecordValidationError(
        f"not valid FHIR {kind} ({rule})", field=element_path(prefix, loc), code="fhir"
    )


def element_path(prefix: str, loc: tuple[str | int, ...]) -> str:
    """``patient.name[0].family`` from a prefix and an element location."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path
