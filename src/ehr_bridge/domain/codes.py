"""Code systems, identifier systems, extensions and profiles used in our FHIR resources.

National URLs come from UK Core STU2 (see ``docs/fhir-profile.md``). The NHS Talking
Therapies data-set code lists (AttendOrDNACode, AppType, ConsMechanism, EndCode,
SourceOfReferralMH) have no published FHIR CodeSystem URL that we could confirm, so they
live under ehr-bridge's own namespace; the codes themselves are the data set's.
"""

from __future__ import annotations

# --- national systems --------------------------------------------------------------------
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_ORGANISATION_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS_NUMBER_VERIFICATION_EXTENSION = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
)
NHS_NUMBER_VERIFICATION_SYSTEM = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
)
NHS_NUMBER_VERIFICATION_SYSTEM_RETIRED = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus"
)
SOURCE_OF_SERVICE_REQUEST_EXTENSION = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-SourceOfServiceRequest"
)
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

UKCORE_PROFILE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-{}"

# --- ehr-bridge's own namespace ----------------------------------------------------------
EHR_BRIDGE_FHIR_BASE = "https://fhir.ehr-bridge.dev"
DATASET_SOURCE_OF_REFERRAL = (
    f"{EHR_BRIDGE_FHIR_BASE}/CodeSystem/talking-therapies-source-of-referral"
)
DATASET_ATTENDANCE = f"{EHR_BRIDGE_FHIR_BASE}/CodeSystem/talking-therapies-attend-or-dna"
DATASET_APPOINTMENT_TYPE = f"{EHR_BRIDGE_FHIR_BASE}/CodeSystem/talking-therapies-appointment-type"
DATASET_CONSULTATION_MECHANISM = (
    f"{EHR_BRIDGE_FHIR_BASE}/CodeSystem/talking-therapies-consultation-mechanism"
)
DATASET_END_CODE = f"{EHR_BRIDGE_FHIR_BASE}/CodeSystem/talking-therapies-end-code"
OUTCOME_MEASURE_SYSTEM = f"{EHR_BRIDGE_FHIR_BASE}/CodeSystem/outcome-measure"
ATTENDANCE_EXTENSION = f"{EHR_BRIDGE_FHIR_BASE}/StructureDefinition/attend-or-dna"
END_CODE_EXTENSION = f"{EHR_BRIDGE_FHIR_BASE}/StructureDefinition/end-code"
QUESTIONNAIRE_BASE = f"{EHR_BRIDGE_FHIR_BASE}/Questionnaire"


def referral_identifier_system(connection: str) -> str:
    """Identifier system for a connection's trust referral ids (ServiceRequestId)."""
    return f"{EHR_BRIDGE_FHIR_BASE}/Id/{connection}/service-request-id"


def patient_identifier_system(connection: str) -> str:
    """Identifier system for a connection's trust-local patient ids."""
    return f"{EHR_BRIDGE_FHIR_BASE}/Id/{connection}/local-patient-id"


def artefact_identifier_system() -> str:
    """Identifier system for our own idempotency keys on session artefacts."""
    return f"{EHR_BRIDGE_FHIR_BASE}/Id/artefact"


# --- code tables (data-set codes -> display); labels marked [unconfirmed] in the profile doc
NHS_NUMBER_VERIFICATION_DISPLAY: dict[str, str] = {
    "01": "Number present and verified",
    "02": "Number present but not traced",
    "03": "Trace required",
    "04": "Trace attempted - No match or multiple match found",
    "05": "Trace needs to be resolved - (NHS Number or patient detail conflict)",
    "06": "Trace in progress",
    "07": "Number not present and trace not required",
    "08": "Trace postponed (baby under six weeks old)",
}
ATTENDANCE_DISPLAY: dict[str, str] = {
    "2": "Cancelled by patient",
    "3": "Did not attend",
    "4": "Cancelled by provider",
    "5": "Attended on time",
    "6": "Arrived late but seen",
    "7": "Arrived late, not seen",
}
#: AttendOrDNACode values that count as an attended contact (NHSE)
ATTENDED_CODES: frozenset[str] = frozenset({"5", "6"})
#: AttendOrDNACode as NHS England also receives it, zero-padded ("05"): its queries match
#: both forms, so collect accepts "05" and stores the code list's own "5"
ATTENDANCE_ALIASES: dict[str, str] = {f"0{code}": code for code in ATTENDANCE_DISPLAY}
APPOINTMENT_TYPE_DISPLAY: dict[str, str] = {
    "01": "Assessment",
    "02": "Treatment",
    "03": "Assessment and treatment",
    "04": "Review without treatment",
    "05": "Review and treatment",
    "06": "Other",
    "10": "Employment support",
}
#: data set v2.1 ConsMechanism (from 2022-04-01); v2.0-only codes 03/06/08 are not valid
CONSULTATION_MECHANISM_DISPLAY: dict[str, str] = {
    "01": "Face to face",
    "02": "Telephone",
    "04": "Talk type for a person unable to speak",
    "05": "Email",
    "09": "Text message (asynchronous)",
    "10": "Instant messaging (synchronous)",
    "11": "Video consultation",
    "12": "Message board (asynchronous)",
    "13": "Chat room (synchronous)",
    "98": "Other",
}
END_CODE_DISPLAY: dict[str, str] = {
    "10": "Not suitable - referred back to referrer",
    "11": "Not suitable - signposted",
    "12": "Discharged after advice",
    "13": "Referred to another therapy service by mutual agreement",
    "14": "Declined treatment",
    "16": "Incomplete assessment",
    "17": "Deceased",
    "46": "Mutually agreed completion of treatment",
    "47": "Ended early (care professional)",
    "48": "Ended early (patient)",
    "49": "Deceased",
    "50": "Not assessed",
    "95": "Not known",
    "96": "Not known",
}
#: SNOMED CT used on every referral: category "Patient referral", code "Psychotherapy"
SNOMED_PATIENT_REFERRAL = "3457005"
SNOMED_PSYCHOTHERAPY = "75516001"
LOINC_PROGRESS_NOTE = "11506-3"
