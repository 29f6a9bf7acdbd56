"""Small checks shared by every rule on untrusted FHIR: paths, references, codings, times.

They live apart from ``validate`` so that the rules for each kind of provider resource
(``validate`` for the session artefacts, ``risk`` for risk events) can share them without
importing each other. Every failure is a ``RecordValidationError`` naming the path and the
rule, never the value.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from ehr_bridge.errors import RecordValidationError

JsonDict = dict[str, Any]


def questionnaire_items(response: JsonDict) -> list[int | None]:
    """Item answers of a QuestionnaireResponse, in linkId order "1".."n"; None if unanswered.

    The linkIds must be exactly "1".."n" in order, each with at most one integer answer:
    anything else is a response we cannot score, so it is rejected rather than guessed.
    """
    values: list[int | None] = []
    for index, item in enumerate(response.get("item") or []):
        if item.get("linkId") != str(index + 1):
            raise invalid(f"item[{index}].linkId", "linkIds must run 1..n in order", "item_link")
        answers = item.get("answer") or []
        if len(answers) > 1:
            raise invalid(f"item[{index}].answer", "at most one answer per item", "item_answer")
        value = answers[0].get("valueInteger") if answers else None
        if answers and (isinstance(value, bool) or not isinstance(value, int)):
            path = f"item[{index}].answer[0].valueInteger"
            raise invalid(path, "answer must be an integer", "item_type")
        values.append(value)
    return values


def invalid(path: str, message: str, code: str) -> RecordValidationError:
    """A rule failure at ``path`` (messages name rules and ranges, never patient values)."""
    return RecordValidationError(message, field=path, code=code)


def prefixed(exc: RecordValidationError, prefix: str) -> RecordValidationError:
    """The same failure, with its field path placed under ``prefix``."""
    path = f"{prefix}.{exc.field}" if exc.field else prefix
    return invalid(path, exc.reason, exc.code)


_REFERENCE = re.compile(r"(?:^|/)(?P<kind>[A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})$")
_URN_UUID = re.compile(r"urn:uuid:(?P<id>[A-Za-z0-9\-.]{1,64})")


def reference_id(reference: Any, kind: str, path: str) -> str:
    """The id a ``kind`` reference points at ("Kind/id", ".../Kind/id" or "urn:uuid:id")."""
    text = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(text, str):
        raise invalid(path, f"needs a literal {kind} reference", "reference_missing")
    urn = _URN_UUID.fullmatch(text)
    if urn:
        return urn["id"]
    match = _REFERENCE.search(text)
    if not match or match["kind"] != kind:
        raise invalid(path, f"is not a {kind} reference", "reference_type")
    return match["id"]


def lookup(resource: JsonDict, dotted: str) -> Any:
    """The value at a dotted path of plain keys, or None."""
    value: Any = resource
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def coding_in(concept: Any, system: str) -> JsonDict | None:
    """The first coding of ``system`` in a CodeableConcept, if any."""
    for coding in (concept or {}).get("coding") or []:
        if coding.get("system") == system:
            found: JsonDict = coding
            return found
    return None


_FULL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def is_full_datetime(value: str) -> bool:
    """True for a FHIR dateTime to the second with a UTC offset that Python can read."""
    if not _FULL_TIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:  # 30 February, a leap second: legal in the pattern, not a real time
        return False
    return True


def is_date(value: str) -> bool:
    """True for a full calendar date (YYYY-MM-DD)."""
    if not _DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True
