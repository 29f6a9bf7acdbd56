"""Referral facts to UK Core Patient + ServiceRequest, after the clinical checks.

This is where a mapped trust referral becomes the FHIR we store and deliver. The facts
are checked first (NHS number Modulus 11, verification status, dates, code patterns); a
failure raises ``RecordValidationError`` naming the record and the field, and the record
is quarantined. Nothing is "fixed": a wrong NHS number must never reach a provider.
Ids are deterministic from (connection, trust key), so a re-pull re-builds the same ids.

NHS numbers follow the connection's policy (``domain.nhs_number``): 9xx test numbers only
where the caller says the connection is a test one (``allow_test_range``), and a Scottish
CHI or Northern Ireland H&C number is quarantined unless ``other_uk_numbers`` is
``local_id``, when the patient is known by the trust's local id alone and that number
is not carried. The presenting problem is stored in the data-set form in the facts and
written to ``reasonCode`` in ICD-10's own form (``F32.0``: ``domain.icd10``).

The built Patient and ServiceRequest are not parsed again with the fhir.resources model
on this path (it cost most of the pull budget); ``primitives.check_built`` checks the FHIR
rules on every value copied in from trust data instead, against a shape of exactly what
these builders emit. Tests compare it with the model over hostile generated facts, so a
builder change that emits a new element fails them until the shape (and the model
comparison) covers it. Bundles and episodes built less often still go through the model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from ehr_bridge.domain import codes, icd10
from ehr_bridge.domain.facts import PatientFacts, ReferralFacts
from ehr_bridge.domain.ids import resource_id
from ehr_bridge.domain.nhs_number import OTHER_SCHEME_CODE, OtherUkNumbers, check_nhs_number
from ehr_bridge.domain.primitives import check_built
from ehr_bridge.domain.validate import validate_resource
from ehr_bridge.errors import RecordValidationError

JsonDict = dict[str, Any]

_SOURCE_OF_REFERRAL = re.compile(r"[A-M][0-9]")
_GENDERS = frozenset({"male", "female", "other", "unknown"})
#: FHIR request-status values (ServiceRequest.status is a required binding)
_REQUEST_STATUSES = frozenset(
    {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
)

#: our referral status write-backs (``referral_status`` events) -> the ServiceRequest
#: status the trust record shows once one has landed: a pulled change to exactly that
#: status is our own write-back coming back, not news for the provider
STATUS_AFTER_OUR_EVENT: dict[str, str] = {"accepted": "active", "discharged": "completed"}


@dataclass(frozen=True)
class ProviderRef:
    """The provider a referral is delivered to: its code and, if known, its ODS code."""

    code: str
    display: str
    ods_code: str | None = None


@dataclass(frozen=True)
class _NhsPolicy:
    """What this connection accepts as an NHS number besides an issued one."""

    allow_test_range: bool
    other_uk_numbers: OtherUkNumbers


@dataclass(frozen=True)
class ReferralResources:
    """The two resources one referral becomes."""

    patient: JsonDict
    service_request: JsonDict


def build_referral_resources(
    connection: str,
    provider: ProviderRef,
    facts: ReferralFacts,
    *,
    patient_id: str | None = None,
    today: date | None = None,
    allow_test_range: bool = False,
    other_uk_numbers: OtherUkNumbers = "quarantine",
) -> ReferralResources:
    """Check ``facts`` and build the UK Core Patient and ServiceRequest for them.

    ``patient_id`` lets the caller reuse a patient already known by NHS number; otherwise
    the id comes from (connection, local patient id). ``today`` is for tests.
    ``allow_test_range`` and ``other_uk_numbers`` are the connection's NHS number policy
    (module doc); the defaults are a live connection's.
    """
    record = facts.trust_referral_id
    policy = _NhsPolicy(allow_test_range, other_uk_numbers)
    nhs_number = _checked_facts(facts, today or date.today(), policy)
    pid = patient_id or resource_id(connection, "Patient", facts.patient.local_id)
    patient = _patient(connection, pid, facts.patient, nhs_number)
    service_request = _service_request(connection, provider, facts, pid)
    return ReferralResources(
        patient=_validated(patient, record, "patient"),
        service_request=_validated(service_request, record, "service_request"),
    )


def _validated(resource: JsonDict, record: str, path: str) -> JsonDict:
    """``check_built`` (we built it: see ``primitives``) with the failure tied to the record."""
    try:
        return check_built(resource, path=path)
    except RecordValidationError as exc:
        raise RecordValidationError(
            exc.reason, field=exc.field, record=record, code=exc.code
        ) from exc


def _fail(record: str | None, field: str, message: str, code: str) -> RecordValidationError:
    """A validation error about this referral (message names the rule, never the value)."""
    return RecordValidationError(message, field=field, record=record, code=code)


def _checked_facts(facts: ReferralFacts, today: date, policy: _NhsPolicy) -> str | None:
    """Apply the referral rules; return the canonical NHS number (or None)."""
    record = facts.trust_referral_id
    if not record.strip():
        raise _fail(None, "trust_referral_id", "referral id is empty", "required")
    nhs_number = _checked_patient(record, facts.patient, today, policy)
    if facts.received_date > today:
        raise _fail(record, "received_date", "date is in the future", "date_in_future")
    if not _SOURCE_OF_REFERRAL.fullmatch(facts.source_of_referral):
        raise _fail(record, "source_of_referral", "not a data-set code [A-M][0-9]", "code")
    _check_problem(record, facts.presenting_problem)
    if facts.status not in _REQUEST_STATUSES:
        raise _fail(record, "status", "not a FHIR request status", "code")
    return nhs_number


def _check_problem(record: str, problem: str | None) -> None:
    """The presenting problem must be ICD-10, in either form (``domain.icd10``)."""
    if problem is not None and not icd10.is_icd10(problem):
        raise _fail(record, "presenting_problem", "not an ICD-10 code", "code")


def _checked_patient(
    record: str, patient: PatientFacts, today: date, policy: _NhsPolicy
) -> str | None:
    """Patient rules: local id, NHS number and status, birth date, gender."""
    if not patient.local_id.strip():
        raise _fail(record, "patient.local_id", "local patient id is empty", "required")
    nhs_number = _checked_nhs_number(record, patient.nhs_number, policy)
    status = patient.nhs_number_status
    if status is not None and status not in codes.NHS_NUMBER_VERIFICATION_DISPLAY:
        raise _fail(record, "patient.nhs_number_status", "not a code 01..08", "code")
    if patient.birth_date is not None and patient.birth_date > today:
        raise _fail(record, "patient.birth_date", "date is in the future", "date_in_future")
    if patient.gender is not None and patient.gender not in _GENDERS:
        raise _fail(record, "patient.gender", "not a FHIR administrative gender", "code")
    return nhs_number


def _checked_nhs_number(record: str, number: str | None, policy: _NhsPolicy) -> str | None:
    """The canonical NHS number, None when absent, or the policy's answer to another scheme.

    A CHI or H&C number under ``local_id`` yields None: the patient is then matched and
    built by local id only, and the other scheme's number never poses as an NHS number.
    """
    if number is None:
        return None
    try:
        return check_nhs_number(
            number, field="patient.nhs_number", allow_test_range=policy.allow_test_range
        )
    except RecordValidationError as exc:
        if exc.code == OTHER_SCHEME_CODE and policy.other_uk_numbers == "local_id":
            return None
        raise _fail(record, "patient.nhs_number", exc.reason, exc.code) from exc


def _patient(connection: str, pid: str, facts: PatientFacts, nhs_number: str | None) -> JsonDict:
    """UK Core Patient: NHS number (with verification status) first, then the local id."""
    identifiers: list[JsonDict] = []
    if nhs_number:
        identifiers.append(_nhs_identifier(nhs_number, facts.nhs_number_status))
    local = {"system": codes.patient_identifier_system(connection), "value": facts.local_id}
    identifiers.append(local)
    patient: JsonDict = {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"profile": [codes.UKCORE_PROFILE.format("Patient")]},
        "identifier": identifiers,
    }
    if facts.family_name or facts.given_names:
        patient["name"] = [_human_name(facts)]
    if facts.gender:
        patient["gender"] = facts.gender
    if facts.birth_date:
        patient["birthDate"] = facts.birth_date.isoformat()
    telecom = _telecom(facts)
    if telecom:
        patient["telecom"] = telecom
    if facts.postcode:
        patient["address"] = [{"use": "home", "postalCode": facts.postcode}]
    return patient


def _nhs_identifier(nhs_number: str, status: str | None) -> JsonDict:
    """The ``identifier:nhsNumber`` slice, shaped as in the UK Core Patient example."""
    identifier: JsonDict = {"system": codes.NHS_NUMBER_SYSTEM, "value": nhs_number}
    if status:
        coding = {
            "system": codes.NHS_NUMBER_VERIFICATION_SYSTEM,
            "code": status,
            "display": codes.NHS_NUMBER_VERIFICATION_DISPLAY[status],
        }
        identifier["extension"] = [
            {
                "url": codes.NHS_NUMBER_VERIFICATION_EXTENSION,
                "valueCodeableConcept": {"coding": [coding]},
            }
        ]
    return identifier


def _human_name(facts: PatientFacts) -> JsonDict:
    """The official name, with only the parts the trust holds."""
    name: JsonDict = {"use": "official"}
    if facts.family_name:
        name["family"] = facts.family_name
    if facts.given_names:
        name["given"] = list(facts.given_names)
    return name


def _telecom(facts: PatientFacts) -> list[JsonDict]:
    """Phone and email contact points, where held."""
    points: list[JsonDict] = []
    if facts.phone:
        points.append({"system": "phone", "value": facts.phone})
    if facts.email:
        points.append({"system": "email", "value": facts.email})
    return points


def _service_request(
    connection: str, provider: ProviderRef, facts: ReferralFacts, pid: str
) -> JsonDict:
    """UK Core ServiceRequest for the onward referral to ``provider``."""
    request: JsonDict = {
        "resourceType": "ServiceRequest",
        "id": resource_id(connection, "ServiceRequest", facts.trust_referral_id),
        "meta": {"profile": [codes.UKCORE_PROFILE.format("ServiceRequest")]},
        "extension": [_source_of_referral(facts)],
        "identifier": [
            {
                "system": codes.referral_identifier_system(connection),
                "value": facts.trust_referral_id,
            }
        ],
        "status": facts.status,
        "intent": "order",
        "category": [{"coding": [REFERRAL_CATEGORY]}],
        "code": {"coding": [PSYCHOTHERAPY_CODE]},
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": facts.received_date.isoformat(),
        "performer": [_performer(provider)],
    }
    if facts.presenting_problem:
        coding = {"system": codes.ICD10, "code": _icd10_code(facts.presenting_problem)}
        request["reasonCode"] = [{"coding": [coding]}]
    return request


def _icd10_code(problem: str) -> str:
    """ICD-10's own form (``F32.0``); the build checked the shape before it got here."""
    return icd10.fhir_form(problem) if icd10.is_icd10(problem) else problem


REFERRAL_CATEGORY: JsonDict = {
    "system": codes.SNOMED,
    "code": codes.SNOMED_PATIENT_REFERRAL,
    "display": "Patient referral",
}
PSYCHOTHERAPY_CODE: JsonDict = {
    "system": codes.SNOMED,
    "code": codes.SNOMED_PSYCHOTHERAPY,
    "display": "Psychotherapy",
}


def _performer(provider: ProviderRef) -> JsonDict:
    """The provider organisation, by ODS code when known, else by its provider code."""
    return {
        "type": "Organization",
        "identifier": {
            "system": codes.ODS_ORGANISATION_SYSTEM,
            "value": provider.ods_code or provider.code,
        },
        "display": provider.display,
    }


def _source_of_referral(facts: ReferralFacts) -> JsonDict:
    """Extension-UKCore-SourceOfServiceRequest: the raw data-set code, plus SNOMED if mapped."""
    codings: list[JsonDict] = [
        {"system": codes.DATASET_SOURCE_OF_REFERRAL, "code": facts.source_of_referral}
    ]
    if facts.source_of_referral_snomed:
        codings.append({"system": codes.SNOMED, "code": facts.source_of_referral_snomed})
    return {
        "url": codes.SOURCE_OF_SERVICE_REQUEST_EXTENSION,
        "valueCodeableConcept": {"coding": codings},
    }


def referral_bundle(
    resources: ReferralResources, prior_episodes: Sequence[JsonDict] = ()
) -> JsonDict:
    """The delivery bundle: a ``collection`` of Patient, earlier episodes, then ServiceRequest.

    Its id is the ServiceRequest id, so delivering the same referral twice produces the
    same bundle id and the provider side can treat the repeat as a replacement. For a
    re-referral, ``prior_episodes`` (from ``prior_episode``) travel with it and the
    ServiceRequest points at them and at their ServiceRequests in ``supportingInfo``, so
    the provider's clinician sees the work already done. The ServiceRequest stays last:
    a reader that keeps one resource per type still finds the current referral.
    """
    service_request = resources.service_request
    if prior_episodes:
        service_request = {**service_request, "supportingInfo": _episode_links(prior_episodes)}
    entries = [
        {"fullUrl": f"urn:uuid:{res['id']}", "resource": res}
        for res in (resources.patient, *prior_episodes, service_request)
    ]
    bundle = {
        "resourceType": "Bundle",
        "id": resources.service_request["id"],
        "type": "collection",
        "entry": entries,
    }
    return validate_resource(bundle)


def _episode_links(episodes: Sequence[JsonDict]) -> list[JsonDict]:
    """``supportingInfo`` of a re-referral: each earlier episode and its ServiceRequest."""
    links: list[JsonDict] = []
    for episode in episodes:
        links.append(episode["referralRequest"][0] | {"display": "Earlier referral"})
        links.append({"reference": f"EpisodeOfCare/{episode['id']}", "display": "Earlier episode"})
    return links


_FINISHED_REQUEST = frozenset({"completed", "revoked", "entered-in-error"})


def prior_episode(
    connection: str, patient_id: str, service_request: JsonDict, episode_end: JsonDict | None
) -> JsonDict:
    """An earlier referral of the same patient as a UK Core EpisodeOfCare.

    ``service_request`` is the earlier referral as we stored it; ``episode_end`` is the
    provider's own EpisodeOfCare ending it, if the provider sent one (its end date and
    EndCode are carried over). The id is deterministic from the trust referral id.
    """
    trust_id = str(service_request["identifier"][0]["value"])
    period: JsonDict = {"start": service_request["authoredOn"]}
    episode: JsonDict = {
        "resourceType": "EpisodeOfCare",
        "id": resource_id(connection, "EpisodeOfCare", trust_id),
        "meta": {"profile": [codes.UKCORE_PROFILE.format("EpisodeOfCare")]},
        "status": "finished"
        if episode_end or service_request["status"] in _FINISHED_REQUEST
        else "active",
        "patient": {"reference": f"Patient/{patient_id}"},
        "referralRequest": [{"reference": f"ServiceRequest/{service_request['id']}"}],
        "period": period,
    }
    if episode_end is not None:
        period["end"] = episode_end.get("period", {}).get("end")
        episode["extension"] = [
            e for e in episode_end.get("extension", []) if e.get("url") == codes.END_CODE_EXTENSION
        ]
    return validate_resource({k: v for k, v in episode.items() if v not in ([], None)})


def with_patient_links(
    patient: JsonDict, *, replaces: Sequence[str] = (), replaced_by: str | None = None
) -> JsonDict:
    """The Patient with ``link`` (and ``active`` false when replaced) for merged records.

    A patient merged away (at the trust, or linked by an operator) is kept, marked
    inactive and ``replaced-by`` the surviving one; the survivor ``replaces`` it. Links
    already present are replaced, so applying this again is harmless.
    """
    if not replaces and replaced_by is None and not {"link", "active"} & patient.keys():
        return patient  # the usual case: nothing to draw, nothing to check again
    result = {k: v for k, v in patient.items() if k not in ("link", "active")}
    links = [{"other": {"reference": f"Patient/{other}"}, "type": "replaces"} for other in replaces]
    if replaced_by is not None:
        links.insert(0, {"other": {"reference": f"Patient/{replaced_by}"}, "type": "replaced-by"})
        result["active"] = False
    if links:
        result["link"] = links
    return validate_resource(result)


def with_subject(service_request: JsonDict, patient_id: str) -> JsonDict:
    """The ServiceRequest pointed at another patient (after an operator's link or unlink)."""
    return {**service_request, "subject": {"reference": f"Patient/{patient_id}"}}
