"""Checks on FHIR we did not build ourselves: the provider platform's session bundles.

Collect runs ``parse_session_bundle`` on untrusted provider output before anything is
stored or queued for write-back. It parses every entry with the FHIR model, then applies
our clinical rules (known measure, score range, total equals the items, attendance coded).
It never repairs anything: the first broken rule raises ``RecordValidationError`` naming
the entry's path and the rule, never the value, and the whole bundle is quarantined.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class

from ehr_bridge.domain import codes
from ehr_bridge.domain.measures import (
    MEASURES,
    PANEL_LOINC_CODES,
    Measure,
    measure_for_code,
    total_from_items,
)
from ehr_bridge.domain.primitives import check_built, has_shape
from ehr_bridge.errors import RecordValidationError

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class SessionArtefacts:
    """The checked contents of one session bundle, grouped by what collect does with them."""

    service_request_id: str
    patient_id: str
    encounters: list[JsonDict]
    observations: list[JsonDict]
    questionnaire_responses: list[JsonDict]
    documents: list[JsonDict]
    episode_ends: list[JsonDict]


def _path(prefix: str, loc: Sequence[int | str]) -> str:
    """A JSON-ish path ("entry[2].resource.item[0].answer") from a pydantic error location."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def validate_resource(resource: JsonDict, *, path: str = "") -> JsonDict:
    """Parse ``resource`` with the FHIR R4B model for its type and return the clean dump.

    The dump (``exclude_none``, JSON mode) is what we store and send, so every resource
    crosses our boundary in one canonical shape. Errors name the element path and the
    pydantic error type only; pydantic's own messages can echo input values.
    """
    dumped: JsonDict = _parsed(resource, path).model_dump(mode="json", exclude_none=True)
    return dumped


def check_own_resource(resource: JsonDict, *, path: str = "") -> JsonDict:
    """Check a resource *our builders made*; return it as is. Never use it for input from outside.

    For the types whose builder shape ``primitives`` knows (the referral's Patient and
    ServiceRequest, on the pull hot path) this is its fast check of the FHIR rules on the
    values copied in from trust data; tests hold its verdict equal to the model's over
    hostile generated referrals. Other types are parsed with the model, without the dump
    (our builders already emit the canonical shape, so the dump would be an equal copy).
    """
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if isinstance(kind, str) and has_shape(kind):
        return check_built(resource, path=path)
    _parsed(resource, path)
    return resource


def _parsed(resource: JsonDict, path: str) -> Any:
    """The FHIR model of ``resource``, or RecordValidationError naming the path and rule."""
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if not isinstance(kind, str):
        raise RecordValidationError(
            "resource has no resourceType", field=_path(path, ["resourceType"]), code="fhir"
        )
    try:
        model = get_fhir_model_class(kind)
    except ValueError as exc:
        raise RecordValidationError(
            "unknown resourceType", field=_path(path, ["resourceType"]), code="fhir"
        ) from exc
    try:
        return model.model_validate(resource)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        raise RecordValidationError(
            f"not valid FHIR {kind} ({first['type']})",
            field=_path(path, first["loc"]),
            code="fhir",
        ) from exc


def note_text(document: JsonDict) -> str:
    """The text of a note DocumentReference (first attachment, base64 UTF-8)."""
    try:
        data = document["content"][0]["attachment"]["data"]
        return base64.b64decode(data, validate=True).decode("utf-8")
    except (KeyError, IndexError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise RecordValidationError(
            "note attachment is not base64 UTF-8 text",
            field="content[0].attachment.data",
            code="note_data",
        ) from exc


def questionnaire_items(response: JsonDict) -> list[int | None]:
    """Item answers of a QuestionnaireResponse, in linkId order "1".."n"; None if unanswered.

    The linkIds must be exactly "1".."n" in order, each with at most one integer answer:
    anything else is a response we cannot score, so it is rejected rather than guessed.
    """
    values: list[int | None] = []
    for index, item in enumerate(response.get("item") or []):
        if item.get("linkId") != str(index + 1):
            raise _invalid(f"item[{index}].linkId", "linkIds must run 1..n in order", "item_link")
        answers = item.get("answer") or []
        if len(answers) > 1:
            raise _invalid(f"item[{index}].answer", "at most one answer per item", "item_answer")
        value = answers[0].get("valueInteger") if answers else None
        if answers and (isinstance(value, bool) or not isinstance(value, int)):
            path = f"item[{index}].answer[0].valueInteger"
            raise _invalid(path, "answer must be an integer", "item_type")
        values.append(value)
    return values


def _invalid(path: str, message: str, code: str) -> RecordValidationError:
    """A rule failure at ``path`` (messages name rules and ranges, never patient values)."""
    return RecordValidationError(message, field=path, code=code)


def _prefixed(exc: RecordValidationError, prefix: str) -> RecordValidationError:
    """The same failure, with its field path placed under ``prefix``."""
    path = f"{prefix}.{exc.field}" if exc.field else prefix
    return _invalid(path, exc.reason, exc.code)


# --- references ------------------------------------------------------------------------
_REFERENCE = re.compile(r"(?:^|/)(?P<kind>[A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})$")
_URN_UUID = re.compile(r"urn:uuid:(?P<id>[A-Za-z0-9\-.]{1,64})")

#: where each accepted resource type points at its patient and its referral
_LINKS: Mapping[str, tuple[str, str]] = {
    "Encounter": ("subject", "basedOn"),
    "Observation": ("subject", "basedOn"),
    "QuestionnaireResponse": ("subject", "basedOn"),
    "DocumentReference": ("subject", "context.related"),
    "EpisodeOfCare": ("patient", "referralRequest"),
}


def _reference_id(reference: Any, kind: str, path: str) -> str:
    """The id a ``kind`` reference points at ("Kind/id", ".../Kind/id" or "urn:uuid:id")."""
    text = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(text, str):
        raise _invalid(path, f"needs a literal {kind} reference", "reference_missing")
    urn = _URN_UUID.fullmatch(text)
    if urn:
        return urn["id"]
    match = _REFERENCE.search(text)
    if not match or match["kind"] != kind:
        raise _invalid(path, f"is not a {kind} reference", "reference_type")
    return match["id"]


def _lookup(resource: JsonDict, dotted: str) -> Any:
    """The value at a dotted path of plain keys, or None."""
    value: Any = resource
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _linked_ids(resource: JsonDict, prefix: str) -> tuple[str, str]:
    """(patient id, service request id) a resource refers to; exactly one of each."""
    patient_key, request_key = _LINKS[resource["resourceType"]]
    patient = _reference_id(resource.get(patient_key), "Patient", f"{prefix}.{patient_key}")
    requests = _lookup(resource, request_key) or []
    if len(requests) != 1:
        raise _invalid(f"{prefix}.{request_key}", "needs exactly one ServiceRequest", "reference")
    request = _reference_id(requests[0], "ServiceRequest", f"{prefix}.{request_key}[0]")
    return patient, request


# --- per-resource rules ----------------------------------------------------------------
@dataclass
class _Context:
    """What the per-resource checks need from the rest of the bundle."""

    responses: dict[str, tuple[str, JsonDict]] = field(default_factory=dict)


def _coding_in(concept: Any, system: str) -> JsonDict | None:
    """The first coding of ``system`` in a CodeableConcept, if any."""
    for coding in (concept or {}).get("coding") or []:
        if coding.get("system") == system:
            found: JsonDict = coding
            return found
    return None


def _check_coded(coding: JsonDict | None, table: Mapping[str, str], path: str) -> None:
    """A required data-set coding must be present and from its code list."""
    if coding is None:
        raise _invalid(path, "required data-set coding is missing", "coding_missing")
    if coding.get("code") not in table:
        raise _invalid(f"{path}.code", "code not in the data-set code list", "code")


def _check_encounter(resource: JsonDict, prefix: str, ctx: _Context) -> None:
    """Encounters must carry the attendance code, the AppType and a start time."""
    extensions = [e for e in resource.get("extension") or [] if e.get("url") == _ATTEND_URL]
    attendance = extensions[0].get("valueCoding") if len(extensions) == 1 else None
    if attendance is not None and attendance.get("system") != codes.DATASET_ATTENDANCE:
        attendance = None
    _check_coded(attendance, codes.ATTENDANCE_DISPLAY, f"{prefix}.extension(attend-or-dna)")
    types = resource.get("type") or []
    app = next((c for t in types if (c := _coding_in(t, codes.DATASET_APPOINTMENT_TYPE))), None)
    _check_coded(app, codes.APPOINTMENT_TYPE_DISPLAY, f"{prefix}.type(appointment-type)")
    mech_system = codes.DATASET_CONSULTATION_MECHANISM
    mech = next((c for t in types if (c := _coding_in(t, mech_system))), None)
    if mech is not None:
        table = codes.CONSULTATION_MECHANISM_DISPLAY
        _check_coded(mech, table, f"{prefix}.type(consultation-mechanism)")
    if not _lookup(resource, "period.start"):
        raise _invalid(f"{prefix}.period.start", "session start time is required", "required")


_ATTEND_URL = codes.ATTENDANCE_EXTENSION


def _observation_measure(resource: JsonDict, prefix: str) -> Measure:
    """The one enabled measure an Observation's codings name; panel-only coding is refused."""
    codings = _lookup(resource, "code.coding") or []
    found = {m.key: m for c in codings if (m := measure_for_code(c.get("system"), c.get("code")))}
    if not found:
        panel = any(
            c.get("system") == codes.LOINC and c.get("code") in PANEL_LOINC_CODES for c in codings
        )
        reason = "coded only by a LOINC panel code" if panel else "not a known outcome measure"
        raise _invalid(f"{prefix}.code", reason, "panel_code" if panel else "measure_unknown")
    if len(found) > 1:
        raise _invalid(f"{prefix}.code", "codings name different measures", "measure_conflict")
    measure = next(iter(found.values()))
    if not measure.enabled:
        raise _invalid(f"{prefix}.code", "measure is not enabled", "measure_disabled")
    return measure


def _score_value(resource: JsonDict, measure: Measure, prefix: str) -> int:
    """The Observation's total: a whole number within the measure's total range."""
    path = f"{prefix}.valueQuantity.value"
    value = _lookup(resource, "valueQuantity.value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(path, "score total is required as a number", "score_missing")
    if value != int(value):
        raise _invalid(path, "score total must be a whole number", "score_type")
    if not measure.total_min <= value <= measure.total_max:
        limits = f"{measure.total_min}..{measure.total_max}"
        raise _invalid(path, f"score total outside {limits}", "score_range")
    return int(value)


def _check_observation(resource: JsonDict, prefix: str, ctx: _Context) -> None:
    """A final score of an enabled measure, in range, equal to its items when we have them."""
    if resource.get("status") not in {"final", "amended", "corrected"}:
        raise _invalid(f"{prefix}.status", "score must be final", "status")
    if not resource.get("effectiveDateTime"):
        raise _invalid(f"{prefix}.effectiveDateTime", "score date is required", "required")
    measure = _observation_measure(resource, prefix)
    total = _score_value(resource, measure, prefix)
    for index, source in enumerate(resource.get("derivedFrom") or []):
        ref_path = f"{prefix}.derivedFrom[{index}]"
        response_id = _reference_id(source, "QuestionnaireResponse", ref_path)
        if response_id in ctx.responses:
            _check_against_items(measure, total, ctx.responses[response_id], prefix)


def _check_against_items(
    measure: Measure, total: int, response: tuple[str, JsonDict], prefix: str
) -> None:
    """Recompute the total from the response's items and require the same number."""
    response_prefix, body = response
    if body.get("questionnaire") != measure.questionnaire_url:
        raise _invalid(f"{prefix}.derivedFrom", "response is for another measure", "measure")
    if _response_total(body, measure, response_prefix) != total:
        path = f"{prefix}.valueQuantity.value"
        raise _invalid(path, "total differs from the sum of the items", "score_mismatch")


def _response_total(response: JsonDict, measure: Measure, prefix: str) -> int:
    """The total of a response's items, with item errors placed under ``prefix``."""
    try:
        return total_from_items(measure, questionnaire_items(response))
    except RecordValidationError as exc:
        raise _prefixed(exc, prefix) from exc


def _check_response(resource: JsonDict, prefix: str, ctx: _Context) -> None:
    """A completed response to one of our enabled measures' questionnaires."""
    if resource.get("status") != "completed":
        raise _invalid(f"{prefix}.status", "response must be completed", "status")
    by_url = {m.questionnaire_url: m for m in MEASURES.values() if m.enabled}
    measure = by_url.get(resource.get("questionnaire", ""))
    if measure is None:
        raise _invalid(f"{prefix}.questionnaire", "not a known measure", "measure_unknown")
    _response_total(resource, measure, prefix)


def _check_document(resource: JsonDict, prefix: str, ctx: _Context) -> None:
    """A note must hold non-empty plain text (UTF-8, base64) in its first attachment."""
    path = f"{prefix}.content[0].attachment"
    content_type = _lookup((resource.get("content") or [{}])[0], "attachment.contentType")
    if not isinstance(content_type, str) or not content_type.startswith("text/plain"):
        raise _invalid(f"{path}.contentType", "note must be text/plain", "note_type")
    try:
        text = note_text(resource)
    except RecordValidationError as exc:
        raise _prefixed(exc, prefix) from exc
    if not text.strip():
        raise _invalid(f"{path}.data", "note text is empty", "note_empty")


def _check_episode(resource: JsonDict, prefix: str, ctx: _Context) -> None:
    """An episode end must be finished, with an end date and a data-set EndCode."""
    if resource.get("status") != "finished":
        raise _invalid(f"{prefix}.status", "episode end must be finished", "status")
    if not _lookup(resource, "period.end"):
        raise _invalid(f"{prefix}.period.end", "end date is required", "required")
    ends = [e for e in resource.get("extension") or [] if e.get("url") == codes.END_CODE_EXTENSION]
    coding = ends[0].get("valueCoding") if len(ends) == 1 else None
    if coding is not None and coding.get("system") != codes.DATASET_END_CODE:
        coding = None
    _check_coded(coding, codes.END_CODE_DISPLAY, f"{prefix}.extension(end-code)")


_Check = Callable[[JsonDict, str, _Context], None]
_CHECKS: Mapping[str, tuple[str, _Check]] = {
    "Encounter": ("encounters", _check_encounter),
    "Observation": ("observations", _check_observation),
    "QuestionnaireResponse": ("questionnaire_responses", _check_response),
    "DocumentReference": ("documents", _check_document),
    "EpisodeOfCare": ("episode_ends", _check_episode),
}


# --- the bundle ------------------------------------------------------------------------
def parse_session_bundle(bundle: JsonDict) -> SessionArtefacts:
    """Check an untrusted provider session bundle and group its resources.

    Every entry is parsed with the FHIR model, must be one of the five artefact types,
    must refer to the same Patient and ServiceRequest as the others, and must pass its
    type's rules. The first failure raises; nothing is dropped or repaired silently.
    """
    entries = _bundle_entries(bundle)
    resources = [validate_resource(e["resource"], path=p) for p, e in entries]
    prefixes = [p for p, _ in entries]
    patient_id, request_id = _common_links(resources, prefixes)
    ctx = _Context(
        responses={
            r["id"]: (p, r)
            for p, r in zip(prefixes, resources, strict=True)
            if r["resourceType"] == "QuestionnaireResponse"
        }
    )
    groups: dict[str, list[JsonDict]] = {name: [] for name, _ in _CHECKS.values()}
    for prefix, resource in zip(prefixes, resources, strict=True):
        group, check = _CHECKS[resource["resourceType"]]
        check(resource, prefix, ctx)
        groups[group].append(resource)
    return SessionArtefacts(service_request_id=request_id, patient_id=patient_id, **groups)


def _bundle_entries(bundle: JsonDict) -> list[tuple[str, JsonDict]]:
    """The entries of a non-empty ``collection`` Bundle, with their paths."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _invalid("resourceType", "session data must be a Bundle", "bundle")
    if bundle.get("type") != "collection":
        raise _invalid("type", "bundle must be a collection", "bundle")
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        raise _invalid("entry", "bundle has no entries", "bundle_empty")
    for index, entry in enumerate(entries):
        inner = entry.get("resource") if isinstance(entry, dict) else None
        kind = inner.get("resourceType") if isinstance(inner, dict) else None
        if not isinstance(kind, str) or kind not in _CHECKS:
            path = f"entry[{index}].resource.resourceType"
            raise _invalid(path, "resource type not accepted in a session bundle", "resource_type")
    return [(f"entry[{index}].resource", entry) for index, entry in enumerate(entries)]


def _common_links(resources: list[JsonDict], prefixes: list[str]) -> tuple[str, str]:
    """The one (patient, service request) every resource refers to; ids unique per type."""
    expected: tuple[str, str] | None = None
    seen: set[tuple[str, str]] = set()
    for prefix, resource in zip(prefixes, resources, strict=True):
        key = (resource["resourceType"], resource.get("id", ""))
        if not key[1] or key in seen:
            raise _invalid(f"{prefix}.id", "needs a unique id", "id")
        seen.add(key)
        links = _linked_ids(resource, prefix)
        expected = expected or links
        if links != expected:
            raise _invalid(prefix, "refers to another patient or referral", "reference_mismatch")
    assert expected is not None  # entries are non-empty
    return expected
