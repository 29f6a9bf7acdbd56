"""Checks on FHIR we did not build ourselves: the provider platform's session bundles.

Collect runs ``parse_session_bundle`` on untrusted provider output before anything is
stored or queued for write-back. It parses every entry with the FHIR model, then applies
our clinical rules (known measure, score range, total equals the items, attendance coded,
times with a UTC offset). It never guesses: the first broken rule raises
``RecordValidationError`` naming the entry's path and the rule, never the value, and the
whole bundle is quarantined. What it returns is canonical, so every later step reads one
form: a score's ``code`` is the catalogue's coding (SNOMED, LOINC total, our key), a
decimal total has two places, ``effectiveInstant`` becomes ``effectiveDateTime``, and a
zero-padded AttendOrDNACode ("05") is the code list's "5".

A total whose item set is not in the bundle cannot be checked here; it is listed in
``SessionArtefacts.awaiting_items`` for collect, which runs ``check_score_against_response``
once the response is stored, or applies the item-less rule when there is none.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class

from ehr_bridge.domain import codes, risk
from ehr_bridge.domain.fhir_checks import coding_in as _coding_in
from ehr_bridge.domain.fhir_checks import invalid as _invalid
from ehr_bridge.domain.fhir_checks import is_date as _is_date
from ehr_bridge.domain.fhir_checks import is_full_datetime as is_full_datetime
from ehr_bridge.domain.fhir_checks import lookup as _lookup
from ehr_bridge.domain.fhir_checks import prefixed as _prefixed
from ehr_bridge.domain.fhir_checks import questionnaire_items as questionnaire_items
from ehr_bridge.domain.fhir_checks import reference_id as _reference_id
from ehr_bridge.domain.measures import (
    PANEL_LOINC_CODES,
    Measure,
    measure_coding,
    measure_for_code,
    measure_table,
    total_from_items,
    two_places,
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
    #: the provider's risk resources (Flag, RiskAssessment, DetectedIssue), checked
    risks: list[JsonDict] = field(default_factory=list)
    #: observation id -> id of the QuestionnaireResponse its derivedFrom names that is not
    #: in this bundle (check it once that response is stored); None: no derivedFrom at all
    awaiting_items: dict[str, str | None] = field(default_factory=dict)


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


# --- references ------------------------------------------------------------------------
#: where each accepted resource type points at its patient and its referral
_LINKS: Mapping[str, tuple[str, str]] = {
    "Encounter": ("subject", "basedOn"),
    "Observation": ("subject", "basedOn"),
    "QuestionnaireResponse": ("subject", "basedOn"),
    "DocumentReference": ("subject", "context.related"),
    "EpisodeOfCare": ("patient", "referralRequest"),
}


def _linked_ids(resource: JsonDict, prefix: str) -> tuple[str, str | None]:
    """(patient id, service request id) a resource refers to; exactly one of each.

    A risk resource may leave its referral out (a Flag has no basedOn): it is then the
    referral of the bundle's other resources.
    """
    if resource["resourceType"] in risk.RISK_TYPES:
        return risk.risk_links(resource, prefix)
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
    """What the per-resource checks need from the rest of the bundle, and what they found."""

    table: Mapping[str, Measure]
    responses: dict[str, tuple[str, JsonDict]] = field(default_factory=dict)
    awaiting_items: dict[str, str | None] = field(default_factory=dict)


def _check_coded(coding: JsonDict | None, table: Mapping[str, str], path: str) -> None:
    """A required data-set coding must be present and from its code list."""
    if coding is None:
        raise _invalid(path, "required data-set coding is missing", "coding_missing")
    if coding.get("code") not in table:
        raise _invalid(f"{path}.code", "code not in the data-set code list", "code")


def _check_encounter(resource: JsonDict, prefix: str, ctx: _Context) -> JsonDict:
    """Encounters carry the attendance code, the AppType and a start and end time.

    AttendOrDNACode "05" (zero-padded, as NHS England also receives it) becomes "5". AppType
    and ConsMechanism are two-character codes in the data set and no source shows NHS
    England accepting them unpadded, so "2" for "02" is refused, not guessed.
    """
    path = f"{prefix}.extension(attend-or-dna)"
    extensions = [e for e in resource.get("extension") or [] if e.get("url") == _ATTEND_URL]
    attendance = extensions[0].get("valueCoding") if len(extensions) == 1 else None
    if attendance is not None and attendance.get("system") != codes.DATASET_ATTENDANCE:
        attendance = None
    if attendance is not None and attendance.get("code") in codes.ATTENDANCE_ALIASES:
        attendance["code"] = codes.ATTENDANCE_ALIASES[attendance["code"]]
    _check_coded(attendance, codes.ATTENDANCE_DISPLAY, path)
    types = resource.get("type") or []
    app = next((c for t in types if (c := _coding_in(t, codes.DATASET_APPOINTMENT_TYPE))), None)
    _check_coded(app, codes.APPOINTMENT_TYPE_DISPLAY, f"{prefix}.type(appointment-type)")
    mech_system = codes.DATASET_CONSULTATION_MECHANISM
    mech = next((c for t in types if (c := _coding_in(t, mech_system))), None)
    if mech is not None:
        table = codes.CONSULTATION_MECHANISM_DISPLAY
        _check_coded(mech, table, f"{prefix}.type(consultation-mechanism)")
    _check_period(resource, prefix)
    return resource


_ATTEND_URL = codes.ATTENDANCE_EXTENSION


def _check_period(resource: JsonDict, prefix: str) -> None:
    """A session needs a start and an end (the trust records its duration), in order."""
    start, end = _lookup(resource, "period.start"), _lookup(resource, "period.end")
    if not start:
        raise _invalid(f"{prefix}.period.start", "session start time is required", "required")
    if not end:
        raise _invalid(f"{prefix}.period.end", "session end time is required", "required")
    if datetime.fromisoformat(end) < datetime.fromisoformat(start):
        raise _invalid(f"{prefix}.period", "session ends before it starts", "period")


# --- dates and times -------------------------------------------------------------------
#: fields that must be a full date-time with a UTC offset: the data set needs CareContTime
#: and AssToolCompTime, and the trust writes need a local date and time
_FULL_TIMES: Mapping[str, tuple[str, ...]] = {
    "Encounter": ("period.start", "period.end"),
    "Observation": ("effectiveDateTime", "effectiveInstant"),
    "QuestionnaireResponse": ("authored",),
    "DocumentReference": ("date",),
    "Flag": ("period.start",),
    "RiskAssessment": ("occurrenceDateTime",),
    "DetectedIssue": ("identifiedDateTime",),
}
#: fields that may also be a calendar date (ServDischDate is a date)
_DATES: Mapping[str, tuple[str, ...]] = {"EpisodeOfCare": ("period.start", "period.end")}


def _check_times(resource: JsonDict, prefix: str) -> None:
    """Refuse a date-only, year/month or offset-less time where we need a full one.

    Runs on the entry as sent, before the FHIR model: the model already refuses an
    offset-less time, but as a generic FHIR error; this names the rule. A value of the
    wrong type is left to the model.
    """
    kind = resource["resourceType"]
    for dotted in _FULL_TIMES.get(kind, ()):
        value = _lookup(resource, dotted)
        if isinstance(value, str) and not is_full_datetime(value):
            reason = "needs a date and time with a UTC offset"
            raise _invalid(f"{prefix}.{dotted}", reason, "datetime_precision")
    for dotted in _DATES.get(kind, ()):
        value = _lookup(resource, dotted)
        if isinstance(value, str) and not (_is_date(value) or is_full_datetime(value)):
            reason = "needs a date, or a date and time with a UTC offset"
            raise _invalid(f"{prefix}.{dotted}", reason, "datetime_precision")


# --- scores ----------------------------------------------------------------------------
def _observation_measure(resource: JsonDict, prefix: str, table: Mapping[str, Measure]) -> Measure:
    """The one enabled measure an Observation's codings name.

    Any LOINC panel code is refused, even beside a correct total code: a trust or a report
    that reads the panel code would file the total as the whole questionnaire. A coding in
    our own measure system with an unknown key is refused too; other codings that name no
    measure (a provider's local code) are dropped by normalisation.
    """
    codings = _lookup(resource, "code.coding") or []
    found: dict[str, Measure] = {}
    for index, coding in enumerate(codings):
        system, code = coding.get("system"), coding.get("code")
        path = f"{prefix}.code.coding[{index}]"
        if system == codes.LOINC and code in PANEL_LOINC_CODES:
            raise _invalid(path, "a LOINC panel code cannot code a total score", "panel_code")
        measure = measure_for_code(str(system), str(code))
        if measure is None and system == codes.OUTCOME_MEASURE_SYSTEM:
            raise _invalid(path, "not a known outcome measure", "measure_unknown")
        if measure is not None:
            found[measure.key] = measure
    if not found:
        raise _invalid(f"{prefix}.code", "not a known outcome measure", "measure_unknown")
    if len(found) > 1:
        raise _invalid(f"{prefix}.code", "codings name different measures", "measure_conflict")
    measure = table[next(iter(found))]
    if not measure.enabled:
        raise _invalid(f"{prefix}.code", "measure is not enabled", "measure_disabled")
    return measure


def _score_value(resource: JsonDict, measure: Measure, prefix: str) -> int | float:
    """The Observation's total in canonical form, within the measure's total range.

    A measure whose total may be a decimal (WSAS pro-rated, a mean) is taken at two
    decimal places, the catalogue's precision; any other total must be a whole number.
    """
    path = f"{prefix}.valueQuantity.value"
    value = _lookup(resource, "valueQuantity.value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(path, "score total is required as a number", "score_missing")
    if measure.decimal_total:
        total = two_places(value)
    elif value != int(value):
        raise _invalid(path, "score total must be a whole number", "score_type")
    else:
        total = int(value)
    if not measure.total_min <= total <= measure.total_max:
        limits = f"{_number(measure.total_min)}..{_number(measure.total_max)}"
        raise _invalid(path, f"score total outside {limits}", "score_range")
    return total


def _number(value: float) -> str:
    """A range bound as people write it (0, not 0.0)."""
    return str(int(value)) if value == int(value) else str(value)


def _derived_response(resource: JsonDict, prefix: str) -> str | None:
    """The id of the one QuestionnaireResponse a total is derived from, or None."""
    sources = resource.get("derivedFrom") or []
    if len(sources) > 1:
        path = f"{prefix}.derivedFrom"
        raise _invalid(path, "a total is derived from one item set", "derived_from")
    if not sources:
        return None
    return _reference_id(sources[0], "QuestionnaireResponse", f"{prefix}.derivedFrom[0]")


def _effective(resource: JsonDict, prefix: str) -> None:
    """A score needs one completion time: effectiveDateTime, or an instant (moved there).

    An instant is always a full time with an offset, so it is the same fact in the field
    every trust mapping reads. A period or timing is refused: which moment the form was
    completed (AssToolCompDate/Time) would be a guess.
    """
    if "effectiveInstant" in resource:
        resource["effectiveDateTime"] = resource.pop("effectiveInstant")
    for other in ("effectivePeriod", "effectiveTiming"):
        if other in resource:
            reason = "score needs one completion time, not a period or timing"
            raise _invalid(f"{prefix}.{other}", reason, "effective_type")
    if not resource.get("effectiveDateTime"):
        raise _invalid(f"{prefix}.effectiveDateTime", "score date is required", "required")


def _check_observation(resource: JsonDict, prefix: str, ctx: _Context) -> JsonDict:
    """A final score of an enabled measure, in range, equal to its items when we have them."""
    if resource.get("status") not in {"final", "amended", "corrected"}:
        raise _invalid(f"{prefix}.status", "score must be final", "status")
    _effective(resource, prefix)
    measure = _observation_measure(resource, prefix, ctx.table)
    total = _score_value(resource, measure, prefix)
    response_id = _derived_response(resource, prefix)
    if response_id is not None and response_id in ctx.responses:
        response_prefix, response = ctx.responses[response_id]
        _check_against_items(measure, total, response, prefix, response_prefix)
    else:
        ctx.awaiting_items[resource["id"]] = response_id
    return _normalised_score(resource, measure, total)


def _normalised_score(resource: JsonDict, measure: Measure, total: int | float) -> JsonDict:
    """The Observation with the catalogue's coding (text kept) and the canonical total."""
    resource["code"] = {**resource["code"], "coding": measure_coding(measure)}
    resource["valueQuantity"] = {**resource["valueQuantity"], "value": total}
    return resource


def _check_against_items(
    measure: Measure, total: int | float, response: JsonDict, prefix: str, response_prefix: str
) -> None:
    """Recompute the total from a completed response of the same measure; require equality."""
    if response.get("status") != "completed":
        raise _invalid(f"{response_prefix}.status", "response must be completed", "status")
    if response.get("questionnaire") != measure.questionnaire_url:
        raise _invalid(f"{prefix}.derivedFrom", "response is for another measure", "measure")
    if _response_total(response, measure, response_prefix) != total:
        path = f"{prefix}.valueQuantity.value"
        raise _invalid(path, "total differs from the sum of the items", "score_mismatch")


def _response_total(response: JsonDict, measure: Measure, prefix: str) -> int | float:
    """The total of a response's items, with item errors placed under ``prefix``."""
    try:
        return total_from_items(measure, questionnaire_items(response))
    except RecordValidationError as exc:
        raise _prefixed(exc, prefix) from exc


def check_score_against_response(
    observation: JsonDict,
    response: JsonDict,
    *,
    adsm_enabled: bool = False,
    observation_path: str = "Observation",
    response_path: str = "QuestionnaireResponse",
) -> None:
    """Check a stored total against the stored item set it is derived from.

    For a total whose items came in another bundle: the same rules as inside one bundle
    (a completed response of the same measure, valid items, an equal total), plus the two
    belonging to the same patient and referral. Raises ``RecordValidationError`` with the
    field path (under ``observation_path`` or ``response_path``) and the rule.
    """
    table = measure_table(adsm_enabled=adsm_enabled)
    measure = _observation_measure(observation, observation_path, table)
    total = _score_value(observation, measure, observation_path)
    if _derived_response(observation, observation_path) != response.get("id"):
        path = f"{observation_path}.derivedFrom"
        raise _invalid(path, "is not derived from this response", "derived_from")
    if _linked_ids(response, response_path) != _linked_ids(observation, observation_path):
        raise _invalid(response_path, "refers to another patient or referral", "reference_mismatch")
    _check_against_items(measure, total, response, observation_path, response_path)


def _check_response(resource: JsonDict, prefix: str, ctx: _Context) -> JsonDict:
    """A completed response to one of the enabled measures' questionnaires."""
    if resource.get("status") != "completed":
        raise _invalid(f"{prefix}.status", "response must be completed", "status")
    by_url = {m.questionnaire_url: m for m in ctx.table.values()}
    measure = by_url.get(resource.get("questionnaire", ""))
    if measure is None:
        raise _invalid(f"{prefix}.questionnaire", "not a known measure", "measure_unknown")
    if not measure.enabled:  # a known measure the service has not switched on (an ADSM)
        raise _invalid(f"{prefix}.questionnaire", "measure is not enabled", "measure_disabled")
    _response_total(resource, measure, prefix)
    return resource


def _check_document(resource: JsonDict, prefix: str, ctx: _Context) -> JsonDict:
    """A note needs its time and non-empty plain text (UTF-8, base64) in its first attachment."""
    if not resource.get("date"):
        raise _invalid(f"{prefix}.date", "note time is required", "required")
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
    return resource


def _check_episode(resource: JsonDict, prefix: str, ctx: _Context) -> JsonDict:
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
    return resource


def _check_risk(resource: JsonDict, prefix: str, ctx: _Context) -> JsonDict:
    """A risk the provider raised: coded, timed and with a level we can read (``risk``)."""
    return risk.check_risk_resource(resource, prefix)


_Check = Callable[[JsonDict, str, _Context], JsonDict]
_CHECKS: Mapping[str, tuple[str, _Check]] = {
    "Encounter": ("encounters", _check_encounter),
    "Observation": ("observations", _check_observation),
    "QuestionnaireResponse": ("questionnaire_responses", _check_response),
    "DocumentReference": ("documents", _check_document),
    "EpisodeOfCare": ("episode_ends", _check_episode),
    "Flag": ("risks", _check_risk),
    "RiskAssessment": ("risks", _check_risk),
    "DetectedIssue": ("risks", _check_risk),
}


# --- the bundle ------------------------------------------------------------------------
def parse_session_bundle(bundle: JsonDict, *, adsm_enabled: bool = False) -> SessionArtefacts:
    """Check an untrusted provider session bundle and group its resources, normalised.

    Every entry is parsed with the FHIR model, must be one of the artefact types (the
    five of a session, and the provider's risk resources),
    must refer to the same Patient and ServiceRequest as the others, and must pass its
    type's rules. The first failure raises; nothing is dropped silently. With
    ``adsm_enabled`` (the service has verified the ADSM rows) ADSM scores are accepted.
    """
    entries = _bundle_entries(bundle)
    resources = [_parsed_entry(e["resource"], p) for p, e in entries]
    prefixes = [p for p, _ in entries]
    patient_id, request_id = _common_links(resources, prefixes)
    ctx = _Context(
        table=measure_table(adsm_enabled=adsm_enabled),
        responses={
            r["id"]: (p, r)
            for p, r in zip(prefixes, resources, strict=True)
            if r["resourceType"] == "QuestionnaireResponse"
        },
    )
    groups: dict[str, list[JsonDict]] = {name: [] for name, _ in _CHECKS.values()}
    for prefix, resource in zip(prefixes, resources, strict=True):
        group, check = _CHECKS[resource["resourceType"]]
        groups[group].append(check(resource, prefix, ctx))
    return SessionArtefacts(
        service_request_id=request_id,
        patient_id=patient_id,
        awaiting_items=ctx.awaiting_items,
        **groups,
    )


def _parsed_entry(resource: JsonDict, prefix: str) -> JsonDict:
    """One entry's time rules, then its FHIR model parse (a fresh dict we may normalise)."""
    _check_times(resource, prefix)
    return validate_resource(resource, path=prefix)


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
    patient: str | None = None
    request: str | None = None
    seen: set[tuple[str, str]] = set()
    for prefix, resource in zip(prefixes, resources, strict=True):
        key = (resource["resourceType"], resource.get("id", ""))
        if not key[1] or key in seen:
            raise _invalid(f"{prefix}.id", "needs a unique id", "id")
        seen.add(key)
        linked_patient, linked_request = _linked_ids(resource, prefix)
        patient = patient or linked_patient
        request = request or linked_request
        if linked_patient != patient or linked_request not in (None, request):
            raise _invalid(prefix, "refers to another patient or referral", "reference_mismatch")
    if request is None:  # only risk resources, none naming its referral
        reason = "a risk needs its referral: extension(referral) or a session resource"
        raise _invalid(f"{prefixes[0]}.extension(referral)", reason, "reference")
    assert patient is not None  # entries are non-empty
    return patient, request
