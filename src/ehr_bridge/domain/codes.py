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
DATASET_SOURCE_OF_REFERRAL = f"{EHR_BRIDGE_FHIR_BASE}/CodeSystem/talking-therapies-source-of-referral"
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
