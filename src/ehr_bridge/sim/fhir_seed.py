"""Seeding the FHIR server simulator as a trust: generated referrals as UK Core FHIR.

The caseload comes from the trust simulator's generator (``sim.generator``: same seed, same
people), re-expressed the way a trust's FHIR facade would hold it: a Patient (id = the
trust's local patient id) and a ServiceRequest (id = the trust's referral id) whose
``performer`` names the provider by ODS-style identifier, ``authoredOn`` is the referral
received date, and ``meta.lastUpdated`` is the record's change time. Data-set codes
(SourceOfReferralMH) ride in Extension-UKCore-SourceOfServiceRequest as a coding in
ehr-bridge's data-set code system, plus SNOMED CT where it is confirmed (A1).

URLs are restated here rather than imported from ``ehr_bridge.domain``: the simulator
stands for someone else's system, so a wrong constant in the domain must not leak into it.

``hostile`` adds that many of our referrals with one deliberate defect each, cycling
through ``HOSTILE_KINDS``; ``seed_trust`` returns ServiceRequest id -> the ReferralFacts
field the defect breaks, so a test can check quarantine named it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from ehr_bridge.sim.fhir_store import FhirStore, JsonDict
from ehr_bridge.sim.generator import generate
from ehr_bridge.sim.records import parse_timestamp

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
UKCORE = "https://fhir.hl7.org.uk"
VERIFICATION_EXTENSION = (
    f"{UKCORE}/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
)
VERIFICATION_SYSTEM = f"{UKCORE}/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
SOURCE_EXTENSION = f"{UKCORE}/StructureDefinition/Extension-UKCore-SourceOfServiceRequest"
SOURCE_SYSTEM = "https://fhir.ehr-bridge.dev/CodeSystem/talking-therapies-source-of-referral"
#: the simulated trust's own identifier systems
LOCAL_PATIENT_SYSTEM = "https://fhir.trust.example/Id/local-patient-id"
LOCAL_REFERRAL_SYSTEM = "https://fhir.trust.example/Id/referral"
_GENDER = {"1": "male", "2": "female", "9": "other", "X": "unknown"}
_SOURCE_SNOMED = {"A1": "108161000000109"}


def patient_resource(patient: JsonDict) -> JsonDict:
    """A generated patient as a UK Core Patient."""
    nhs: JsonDict = {"system": NHS_NUMBER, "value": patient["nhs_number"]}
    status = {"system": VERIFICATION_SYSTEM, "code": patient["nhs_number_status"]}
    nhs["extension"] = [
        {"url": VERIFICATION_EXTENSION, "valueCodeableConcept": {"coding": [status]}}
    ]
    resource: JsonDict = {
        "resourceType": "Patient",
        "id": patient["local_id"],
        "identifier": [nhs, {"system": LOCAL_PATIENT_SYSTEM, "value": patient["local_id"]}],
        "name": [
            {"use": "official", "family": patient["family_name"], "given": [patient["given_name"]]}
        ],
        "gender": _GENDER[patient["gender"]],
        "birthDate": patient["birth_date"],
        "telecom": [{"system": "phone", "value": patient["phone"], "use": "mobile"}],
        "address": [{"use": "home", "postalCode": patient["postcode"]}],
    }
    if patient.get("email"):
        resource["telecom"].append({"system": "email", "value": patient["email"]})
    return resource


def service_request_resource(referral: JsonDict) -> JsonDict:
    """A generated referral as the UK Core ServiceRequest of an onward referral."""
    source = referral["source_of_referral"]
    codings = [{"system": SOURCE_SYSTEM, "code": source}]
    if source in _SOURCE_SNOMED:
        codings.append({"system": SNOMED, "code": _SOURCE_SNOMED[source]})
    return {
        "resourceType": "ServiceRequest",
        "id": referral["id"],
        "extension": [{"url": SOURCE_EXTENSION, "valueCodeableConcept": {"coding": codings}}],
        "identifier": [{"system": LOCAL_REFERRAL_SYSTEM, "value": referral["id"]}],
        "status": "active",
        "intent": "order",
        "category": [
            {"coding": [{"system": SNOMED, "code": "3457005", "display": "Patient referral"}]}
        ],
        "code": {"coding": [{"system": SNOMED, "code": "75516001", "display": "Psychotherapy"}]},
        "subject": {"reference": f"Patient/{referral['patient']['local_id']}"},
        "authoredOn": referral["received_date"],
        "performer": [
            {
                "type": "Organization",
                "identifier": {"system": ODS, "value": referral["referred_on_to"]},
            }
        ],
        "reasonCode": [
            {"coding": [{"system": ICD10, "code": _dotted(referral["presenting_problem"])}]}
        ],
    }


def _dotted(code: str) -> str:
    """ICD-10 as a FHIR trust writes it (F411 -> F41.1; F42 stays): the code system's form."""
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def _nhs_mod11(request: JsonDict, patient: JsonDict) -> None:
    number = patient["identifier"][0]["value"]
    patient["identifier"][0]["value"] = number[:9] + str((int(number[9]) + 1) % 10)


def _birth_future(request: JsonDict, patient: JsonDict) -> None:
    born = date.fromisoformat(patient["birthDate"])
    patient["birthDate"] = date(born.year + 80, born.month, min(born.day, 28)).isoformat()


def _source_missing(request: JsonDict, patient: JsonDict) -> None:
    del request["extension"]


def _authored_missing(request: JsonDict, patient: JsonDict) -> None:
    del request["authoredOn"]


_Breaker = Callable[[JsonDict, JsonDict], None]
_KINDS: dict[str, tuple[str, _Breaker]] = {
    "nhs_number_mod11": ("patient.nhs_number", _nhs_mod11),
    "birth_date_future": ("patient.birth_date", _birth_future),
    "source_of_referral_missing": ("source_of_referral", _source_missing),
    "authored_on_missing": ("received_date", _authored_missing),
    "patient_missing": ("patient.local_id", lambda request, patient: None),
}
#: the defects ``hostile`` cycles through, in order
HOSTILE_KINDS: tuple[str, ...] = tuple(_KINDS)


def seed_trust(
    store: FhirStore, *, seed: int, referrals: int, hostile: int, provider_code: str
) -> dict[str, str]:
    """Fill ``store`` with a trust's referrals; answer ServiceRequest id -> broken field."""
    dataset = generate(seed=seed, referrals=referrals, provider_code=provider_code)
    for record in dataset.referrals:
        _store(store, record, None)
    broken: dict[str, str] = {}
    factory = dataset.factory
    if factory is None:
        return broken
    for index in range(hostile):
        kind = HOSTILE_KINDS[index % len(HOSTILE_KINDS)]
        record = factory.referral(provider_code)
        broken[record["id"]] = _store(store, record, kind)
    return broken


def _store(store: FhirStore, record: JsonDict, hostile: str | None) -> str:
    request = service_request_resource(record)
    patient = patient_resource(record["patient"])
    field = ""
    if hostile is not None:
        field, breaker = _KINDS[hostile]
        breaker(request, patient)
    when = parse_timestamp(record["updated_at"])
    if hostile != "patient_missing":
        store.put(patient, when=when)
    store.put(request, when=when)
    return field
