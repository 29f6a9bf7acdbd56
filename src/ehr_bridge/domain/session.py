"""Builders for session artefacts: Encounter, scores, notes, episode end, risk flags.

The synthetic therapy platform builds its output only through these functions, so what
collect receives is exactly what the domain defines, and tests can exercise the whole
round trip. Each builder returns a resource already parsed by the FHIR model (see
``validate_resource``) and rejects codes outside the data-set code lists.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from ehr_bridge.domain import codes, risk
from ehr_bridge.domain.measures import (
    Measure,
    measure_coding,
    measure_table,
    total_from_items,
)
from ehr_bridge.domain.validate import validate_resource
from ehr_bridge.errors import RecordValidationError

JsonDict = dict[str, Any]

NOTE_CONTENT_TYPE = "text/plain; charset=utf-8"


def _profile(name: str) -> JsonDict:
    """``meta`` claiming the UK Core profile ``name``."""
    return {"profile": [codes.UKCORE_PROFILE.format(name)]}


def _ref(kind: str, resource_id: str) -> JsonDict:
    """A relative literal reference (``Kind/id``)."""
    return {"reference": f"{kind}/{resource_id}"}


def _artefact_identifier(value: str) -> JsonDict:
    """Our idempotency identifier for an artefact."""
    return {"system": codes.artefact_identifier_system(), "value": value}


def _coded(system: str, table: Mapping[str, str], code: str, field: str) -> JsonDict:
    """A Coding from a data-set code list; an unknown code is a validation error."""
    display = table.get(code)
    if display is None:
        raise RecordValidationError("code not in the data-set code list", field=field, code="code")
    return {"system": system, "code": code, "display": display}


def _instant(value: datetime, field: str) -> str:
    """ISO 8601 with the original UTC offset; naive datetimes are refused (FHIR needs a zone)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise RecordValidationError("datetime needs a timezone", field=field, code="timezone")
    return value.isoformat()


def build_encounter(
    *,
    encounter_id: str,
    patient_id: str,
    service_request_id: str,
    start: datetime,
    end: datetime,
    appointment_type: str = "02",
    attendance: str = "5",
    consultation_mechanism: str = "10",
    therapist: str | None = None,
) -> JsonDict:
    """One therapy session (data set care contact) as a UK Core Encounter.

    Attended contacts (AttendOrDNACode 5/6) are ``finished``; cancelled and missed ones are
    ``cancelled``; the raw code rides in the attendance extension either way.
    """
    period = {"start": _instant(start, "period.start"), "end": _instant(end, "period.end")}
    if end < start:
        raise RecordValidationError("session ends before it starts", field="period", code="period")
    status = "finished" if attendance in codes.ATTENDED_CODES else "cancelled"
    encounter: JsonDict = {
        "resourceType": "Encounter",
        "id": encounter_id,
        "meta": _profile("Encounter"),
        "extension": [_attendance_extension(attendance)],
        "identifier": [_artefact_identifier(encounter_id)],
        "status": status,
        "class": {"system": codes.ACT_CODE, "code": "VR", "display": "virtual"},
        "type": _encounter_types(appointment_type, consultation_mechanism),
        "subject": _ref("Patient", patient_id),
        "basedOn": [_ref("ServiceRequest", service_request_id)],
        "period": period,
    }
    if therapist:
        encounter["participant"] = [{"individual": {"display": therapist}}]
    return validate_resource(encounter)


def _attendance_extension(attendance: str) -> JsonDict:
    """The AttendOrDNACode extension."""
    coding = _coded(codes.DATASET_ATTENDANCE, codes.ATTENDANCE_DISPLAY, attendance, "attendance")
    return {"url": codes.ATTENDANCE_EXTENSION, "valueCoding": coding}


def _encounter_types(appointment_type: str, mechanism: str) -> list[JsonDict]:
    """Encounter.type: the AppType and the (v2.1) consultation mechanism."""
    app = _coded(
        codes.DATASET_APPOINTMENT_TYPE,
        codes.APPOINTMENT_TYPE_DISPLAY,
        appointment_type,
        "appointment_type",
    )
    mech = _coded(
        codes.DATASET_CONSULTATION_MECHANISM,
        codes.CONSULTATION_MECHANISM_DISPLAY,
        mechanism,
        "consultation_mechanism",
    )
    return [{"coding": [app]}, {"coding": [mech]}]


def _enabled_measure(measure_key: str, adsm_enabled: bool = False) -> Measure:
    """The measure for ``measure_key`` if it exists and is enabled (ADSMs: with the switch)."""
    measure = measure_table(adsm_enabled=adsm_enabled).get(measure_key)
    if measure is None or not measure.enabled:
        raise RecordValidationError(
            "unknown or disabled measure", field="measure_key", code="measure_unknown"
        )
    return measure


def build_score(
    *,
    observation_id: str,
    response_id: str,
    patient_id: str,
    service_request_id: str,
    encounter_id: str | None,
    measure_key: str,
    items: Sequence[int | None],
    effective: datetime,
    adsm_enabled: bool = False,
) -> tuple[JsonDict, JsonDict]:
    """A completed questionnaire as (QuestionnaireResponse, total-score Observation).

    ADSM rows are refused unless ``adsm_enabled`` (a provider platform that sends them).

    The total is computed here from the items (never taken from the caller; a WSAS with a
    missing item gives a decimal such as 18.75), and the Observation is ``derivedFrom`` the
    response so the pair can be rechecked on the way in.
    """
    measure = _enabled_measure(measure_key, adsm_enabled)
    total = total_from_items(measure, items)
    when = _instant(effective, "effective")
    context: JsonDict = {
        "subject": _ref("Patient", patient_id),
        "basedOn": [_ref("ServiceRequest", service_request_id)],
    }
    if encounter_id:
        context["encounter"] = _ref("Encounter", encounter_id)
    response = _questionnaire_response(response_id, measure, items, when, context)
    observation = _score_observation(observation_id, response_id, measure, total, when, context)
    return validate_resource(response), validate_resource(observation)


def _questionnaire_response(
    response_id: str,
    measure: Measure,
    items: Sequence[int | None],
    when: str,
    context: JsonDict,
) -> JsonDict:
    """The item answers, linkId "1".."n"; an unanswered item has no ``answer``."""
    answers: list[JsonDict] = []
    for number, value in enumerate(items, start=1):
        item: JsonDict = {"linkId": str(number)}
        if value is not None:
            item["answer"] = [{"valueInteger": value}]
        answers.append(item)
    return {
        "resourceType": "QuestionnaireResponse",
        "id": response_id,
        "meta": _profile("QuestionnaireResponse"),
        "identifier": _artefact_identifier(response_id),
        "questionnaire": measure.questionnaire_url,
        "status": "completed",
        **context,
        "authored": when,
        "item": answers,
    }


def _score_observation(
    observation_id: str,
    response_id: str,
    measure: Measure,
    total: int | float,
    when: str,
    context: JsonDict,
) -> JsonDict:
    """The total score, coded as UK Core's scored-total pattern (survey, {ScoreOf})."""
    return {
        "resourceType": "Observation",
        "id": observation_id,
        "meta": _profile("Observation"),
        "identifier": [_artefact_identifier(observation_id)],
        "status": "final",
        "category": [{"coding": [SURVEY_CATEGORY]}],
        "code": {"coding": measure_coding(measure), "text": f"{measure.name} total score"},
        **context,
        "effectiveDateTime": when,
        "valueQuantity": score_quantity(total),
        "derivedFrom": [_ref("QuestionnaireResponse", response_id)],
    }


SURVEY_CATEGORY: JsonDict = {
    "system": codes.OBSERVATION_CATEGORY,
    "code": "survey",
    "display": "Survey",
}


def score_quantity(total: int | float) -> JsonDict:
    """Observation.valueQuantity for a score (UCUM ``{ScoreOf}``, as UK Core's example).

    A decimal total (WSAS pro-rated for a missing item, a mean) keeps its two places.
    """
    return {"value": total, "unit": "ScoreOf", "system": codes.UCUM, "code": "{ScoreOf}"}


def build_note(
    *,
    document_id: str,
    patient_id: str,
    service_request_id: str,
    encounter_id: str,
    text: str,
    authored: datetime,
    author: str | None = None,
    title: str = "Therapy session note",
) -> JsonDict:
    """A session note as a UK Core DocumentReference with the text inline (base64 UTF-8).

    ``masterIdentifier`` carries our stable document id so a re-sent note is the same
    document, not a new one.
    """
    if not text.strip():
        raise RecordValidationError("note text is empty", field="text", code="note_empty")
    data = base64.b64encode(text.encode("utf-8")).decode("ascii")
    document: JsonDict = {
        "resourceType": "DocumentReference",
        "id": document_id,
        "meta": _profile("DocumentReference"),
        "masterIdentifier": _artefact_identifier(document_id),
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [PROGRESS_NOTE_TYPE]},
        "subject": _ref("Patient", patient_id),
        "date": _instant(authored, "authored"),
        "description": title,
        "content": [
            {"attachment": {"contentType": NOTE_CONTENT_TYPE, "data": data, "title": title}}
        ],
        "context": {
            "encounter": [_ref("Encounter", encounter_id)],
            "related": [_ref("ServiceRequest", service_request_id)],
        },
    }
    if author:
        document["author"] = [{"display": author}]
    return validate_resource(document)


PROGRESS_NOTE_TYPE: JsonDict = {
    "system": codes.LOINC,
    "code": codes.LOINC_PROGRESS_NOTE,
    "display": "Progress note",
}


def build_episode_end(
    *,
    episode_id: str,
    patient_id: str,
    service_request_id: str,
    start: date,
    end: date,
    end_code: str,
) -> JsonDict:
    """The end of treatment as a finished UK Core EpisodeOfCare carrying the data-set EndCode."""
    if end < start:
        raise RecordValidationError("episode ends before it starts", field="period", code="period")
    coding = _coded(codes.DATASET_END_CODE, codes.END_CODE_DISPLAY, end_code, "end_code")
    episode: JsonDict = {
        "resourceType": "EpisodeOfCare",
        "id": episode_id,
        "meta": _profile("EpisodeOfCare"),
        "extension": [{"url": codes.END_CODE_EXTENSION, "valueCoding": coding}],
        "identifier": [_artefact_identifier(episode_id)],
        "status": "finished",
        "patient": _ref("Patient", patient_id),
        "referralRequest": [_ref("ServiceRequest", service_request_id)],
        "period": {"start": start.isoformat(), "end": end.isoformat()},
    }
    return validate_resource(episode)


def build_risk_flag(
    *,
    flag_id: str,
    patient_id: str,
    service_request_id: str,
    raised: datetime,
    concept: tuple[str, str],
    level: str = "urgent",
    encounter_id: str | None = None,
    shareable_text: str | None = None,
) -> JsonDict:
    """A risk the provider's therapist raised, as an active UK Core Flag (``domain.risk``).

    The referral is named by our ``referral`` extension, since an R4 Flag has no basedOn;
    ``shareable_text`` is the one line the provider marks as fit for the trust's duty team.
    """
    extension: list[JsonDict] = [
        {
            "url": risk.REFERRAL_EXTENSION,
            "valueReference": _ref("ServiceRequest", service_request_id),
        },
        {"url": risk.RISK_LEVEL_EXTENSION, "valueCode": level},
    ]
    if shareable_text is not None:
        extension.append({"url": risk.SHAREABLE_TEXT_EXTENSION, "valueString": shareable_text})
    flag: JsonDict = {
        "resourceType": "Flag",
        "id": flag_id,
        "meta": _profile("Flag"),
        "extension": extension,
        "status": "active",
        "category": [
            {"coding": [{"system": risk.FLAG_CATEGORY, "code": "safety", "display": "Safety"}]}
        ],
        "code": {"coding": [{"system": codes.SNOMED, "code": concept[0], "display": concept[1]}]},
        "subject": _ref("Patient", patient_id),
        "period": {"start": _instant(raised, "raised")},
    }
    if encounter_id is not None:
        flag["encounter"] = _ref("Encounter", encounter_id)
    return validate_resource(flag)


def session_bundle(bundle_id: str, resources: Sequence[JsonDict]) -> JsonDict:
    """A ``collection`` Bundle of session artefacts, each entry with a ``urn:uuid`` fullUrl."""
    entries = [{"fullUrl": f"urn:uuid:{res['id']}", "resource": res} for res in resources]
    bundle = {"resourceType": "Bundle", "id": bundle_id, "type": "collection", "entry": entries}
    return validate_resource(bundle)
