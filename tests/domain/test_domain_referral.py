from datetime import date

import pytest

from ehr_bridge.domain import codes
from ehr_bridge.domain.facts import PatientFacts, ReferralFacts
from ehr_bridge.domain.ids import resource_id
from ehr_bridge.domain.referral import (
    ProviderRef,
    build_referral_resources,
    referral_bundle,
)
from ehr_bridge.domain.validate import validate_resource
from ehr_bridge.errors import RecordValidationError
from support.fhir_schema import assert_valid_r4

TODAY = date(2026, 11, 26)
PROVIDER = ProviderRef(code="IESO01", display="ieso Digital Health", ods_code="AXY01")


def facts(**changes) -> ReferralFacts:
    patient_changes = changes.pop("patient", {})
    if isinstance(patient_changes, PatientFacts):
        changes["patient"] = patient_changes
        patient_changes = {}
    patient = PatientFacts(
        local_id="P0000045",
        nhs_number="9434765919",
        nhs_number_status="01",
        family_name="Example",
        given_names=["Alex", "Sam"],
        birth_date=date(1985, 4, 2),
        gender="female",
        postcode="LS1 4AP",
        phone="07700 900123",
        email="alex@example.invalid",
    ).model_copy(update=patient_changes)
    base = ReferralFacts(
        trust_referral_id="SR0000123",
        received_date=date(2026, 11, 1),
        source_of_referral="B1",
        presenting_problem="F411",
        referred_on_to="IESO01",
        patient=patient,
    )
    return base.model_copy(update=changes)


def build(f: ReferralFacts | None = None, **kwargs):
    """A test connection's build (the fixtures use test-range NHS numbers) unless told."""
    kwargs.setdefault("allow_test_range", True)
    return build_referral_resources("trust-a", PROVIDER, f or facts(), today=TODAY, **kwargs)


def test_resources_are_valid_r4_and_round_trip():
    res = build()
    for resource in (res.patient, res.service_request, referral_bundle(res)):
        assert_valid_r4(resource)
        assert validate_resource(resource) == resource


def test_patient_identity_and_profile():
    patient = build().patient
    assert patient["id"] == resource_id("trust-a", "Patient", "P0000045")
    assert patient["meta"]["profile"] == [
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
    ]
    nhs, local = patient["identifier"]
    assert (nhs["system"], nhs["value"]) == ("https://fhir.nhs.uk/Id/nhs-number", "9434765919")
    status = nhs["extension"][0]
    assert status["url"] == codes.NHS_NUMBER_VERIFICATION_EXTENSION
    assert status["valueCodeableConcept"]["coding"][0]["code"] == "01"
    assert local == {"system": codes.patient_identifier_system("trust-a"), "value": "P0000045"}
    assert patient["name"] == [{"use": "official", "family": "Example", "given": ["Alex", "Sam"]}]
    assert (patient["birthDate"], patient["gender"]) == ("1985-04-02", "female")
    assert patient["address"] == [{"use": "home", "postalCode": "LS1 4AP"}]
    assert {t["system"] for t in patient["telecom"]} == {"phone", "email"}


def test_grouped_nhs_number_is_stored_canonically():
    patient = build(facts(patient={"nhs_number": "943 476 5919"})).patient
    assert patient["identifier"][0]["value"] == "9434765919"


def test_patient_without_nhs_number_or_status():
    patient = build(facts(patient={"nhs_number": None, "nhs_number_status": None})).patient
    assert [i["system"] for i in patient["identifier"]] == [
        codes.patient_identifier_system("trust-a")
    ]
    no_status = build(facts(patient={"nhs_number_status": None})).patient["identifier"][0]
    assert "extension" not in no_status


def test_minimal_patient_is_still_valid():
    minimal = PatientFacts(local_id="P1")
    res = build(facts(patient=minimal, presenting_problem=None))
    assert set(res.patient) == {"resourceType", "id", "meta", "identifier"}
    assert "reasonCode" not in res.service_request
    assert_valid_r4(res.patient)
    assert_valid_r4(res.service_request)


def test_patient_id_override_is_used_everywhere():
    res = build(patient_id="known-patient-1")
    assert res.patient["id"] == "known-patient-1"
    assert res.service_request["subject"] == {"reference": "Patient/known-patient-1"}


def test_service_request_shape():
    sr = build(facts(source_of_referral_snomed="108161000000109")).service_request
    assert sr["id"] == resource_id("trust-a", "ServiceRequest", "SR0000123")
    assert sr["identifier"] == [
        {"system": codes.referral_identifier_system("trust-a"), "value": "SR0000123"}
    ]
    assert (sr["status"], sr["intent"], sr["authoredOn"]) == ("active", "order", "2026-11-01")
    assert sr["category"][0]["coding"][0]["code"] == "3457005"
    assert sr["code"]["coding"][0] == {
        "system": codes.SNOMED,
        "code": "75516001",
        "display": "Psychotherapy",
    }
    assert sr["performer"][0]["identifier"] == {
        "system": codes.ODS_ORGANISATION_SYSTEM,
        "value": "AXY01",
    }
    assert sr["reasonCode"][0]["coding"][0] == {"system": codes.ICD10, "code": "F41.1"}
    source = sr["extension"][0]
    assert source["url"] == codes.SOURCE_OF_SERVICE_REQUEST_EXTENSION
    assert [(c["system"], c["code"]) for c in source["valueCodeableConcept"]["coding"]] == [
        (codes.DATASET_SOURCE_OF_REFERRAL, "B1"),
        (codes.SNOMED, "108161000000109"),
    ]


def test_performer_falls_back_to_the_provider_code():
    sr = build_referral_resources(
        "trust-a", ProviderRef("IESO01", "ieso"), facts(), today=TODAY, allow_test_range=True
    ).service_request
    assert sr["performer"][0]["identifier"]["value"] == "IESO01"


def test_revoked_status_passes_through():
    assert build(facts(status="revoked")).service_request["status"] == "revoked"


def test_rebuilding_gives_identical_resources():
    assert build() == build()


def test_bundle_is_patient_then_service_request_with_urn_uuids():
    res = build()
    bundle = referral_bundle(res)
    assert (bundle["type"], bundle["id"]) == ("collection", res.service_request["id"])
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Patient", "ServiceRequest"]
    assert [e["fullUrl"] for e in bundle["entry"]] == [
        f"urn:uuid:{res.patient['id']}",
        f"urn:uuid:{res.service_request['id']}",
    ]


@pytest.mark.parametrize(
    ("changes", "field", "code", "secret"),
    [
        (
            {"patient": {"nhs_number": "9912003814"}},
            "patient.nhs_number",
            "nhs_number_invalid",
            "9912003814",
        ),
        (
            {"patient": {"nhs_number": "99120038"}},
            "patient.nhs_number",
            "nhs_number_format",
            "99120038",
        ),
        ({"patient": {"nhs_number_status": "09"}}, "patient.nhs_number_status", "code", None),
        (
            {"patient": {"nhs_number_status": "number-present-and-verified"}},
            "patient.nhs_number_status",
            "code",
            None,
        ),
        (
            {"patient": {"birth_date": date(2027, 1, 1)}},
            "patient.birth_date",
            "date_in_future",
            "2027",
        ),
        ({"patient": {"gender": "2"}}, "patient.gender", "code", None),
        ({"patient": {"local_id": " "}}, "patient.local_id", "required", None),
        ({"received_date": date(2026, 11, 27)}, "received_date", "date_in_future", "2026-11-27"),
        ({"source_of_referral": "N1"}, "source_of_referral", "code", None),
        ({"source_of_referral": "B12"}, "source_of_referral", "code", None),
        ({"presenting_problem": "anxiety"}, "presenting_problem", "code", "anxiety"),
        ({"status": "referred_on"}, "status", "code", None),
    ],
)
def test_rule_failures_name_record_and_field_never_the_value(changes, field, code, secret):
    with pytest.raises(RecordValidationError) as caught:
        build(facts(**changes))
    error = caught.value
    assert (error.field, error.code, error.record) == (field, code, "SR0000123")
    if secret:
        assert secret not in str(error)
    for value in ("9434765919", "Example", "Alex", "LS1 4AP", "1985"):
        assert value not in str(error)


def test_empty_referral_id_is_refused():
    with pytest.raises(RecordValidationError) as caught:
        build(facts(trust_referral_id=""))
    assert caught.value.field == "trust_referral_id"


def test_model_level_failure_is_tied_to_the_record():
    # FHIR strings cannot be empty; the model catches what the facts rules do not
    with pytest.raises(RecordValidationError) as caught:
        build(facts(patient={"given_names": ["Alex", ""]}))
    assert caught.value.record == "SR0000123"
    assert caught.value.field == "patient.name[0].given[1]"
    assert caught.value.code == "fhir"
    assert "Alex" not in str(caught.value)


# --- NHS number policy: issued ranges, the test range, other UK schemes ---------------

ISSUED = "4010232137"  # Modulus 11 valid, in the England/Wales/IoM range
CHI = "0101901232"  # a Scottish CHI number: 1 January 1990, valid check digit
HC = "3200000015"  # a Northern Ireland H&C number


def _refused(f: ReferralFacts, **kwargs) -> RecordValidationError:
    with pytest.raises(RecordValidationError) as caught:
        build(f, **kwargs)
    error = caught.value
    assert (error.field, error.record) == ("patient.nhs_number", "SR0000123")
    number = f.patient.nhs_number or ""
    text = str(error).replace("SR0000123", "")
    assert number not in text and number[:3] not in text
    return error


def test_a_live_connection_refuses_a_test_range_number():
    error = _refused(facts(), allow_test_range=False)
    assert error.code == "nhs_number_test_range"


def test_the_default_build_is_a_live_connections():
    with pytest.raises(RecordValidationError) as caught:
        build_referral_resources("trust-a", PROVIDER, facts(), today=TODAY)
    assert caught.value.code == "nhs_number_test_range"


def test_an_issued_number_is_accepted_on_a_live_connection():
    patient = build(facts(patient={"nhs_number": ISSUED}), allow_test_range=False).patient
    assert patient["identifier"][0]["value"] == ISSUED


@pytest.mark.parametrize("number", ["0000000000", "9999999999", "4444444444"])
@pytest.mark.parametrize("test_connection", [False, True])
def test_placeholders_are_refused_on_every_connection(number, test_connection):
    error = _refused(facts(patient={"nhs_number": number}), allow_test_range=test_connection)
    assert error.code == "nhs_number_placeholder"


@pytest.mark.parametrize("number", ["5000000005", "8000000008"])
def test_numbers_no_scheme_issues_are_refused(number):
    assert _refused(facts(patient={"nhs_number": number})).code == "nhs_number_range"


@pytest.mark.parametrize("number", [CHI, HC])
def test_other_uk_scheme_numbers_are_quarantined_by_default(number):
    error = _refused(facts(patient={"nhs_number": number}))
    assert error.code == "nhs_number_other_scheme"


@pytest.mark.parametrize("number", [CHI, HC])
def test_local_id_policy_keeps_the_referral_but_never_the_number_as_an_nhs_number(number):
    res = build(facts(patient={"nhs_number": number}), other_uk_numbers="local_id")
    assert res.patient["identifier"] == [
        {"system": codes.patient_identifier_system("trust-a"), "value": "P0000045"}
    ]
    assert number not in str(res.patient) and number not in str(res.service_request)
    assert_valid_r4(res.patient)


def test_local_id_policy_does_not_let_other_refusals_through():
    policy = {"other_uk_numbers": "local_id"}
    assert _refused(facts(), allow_test_range=False, **policy).code == "nhs_number_test_range"
    placeholder = facts(patient={"nhs_number": "0000000000"})
    assert _refused(placeholder, **policy).code == "nhs_number_placeholder"


# --- ICD-10: data-set form inside, the code system's own form in FHIR -----------------


def _referral(problem: str | None) -> ReferralFacts:
    """Facts built as a mapping builds them (the model's validators run)."""
    return ReferralFacts.model_validate(
        facts().model_dump() | {"presenting_problem": problem}, strict=False
    )


@pytest.mark.parametrize(
    ("given", "dataset", "fhir"),
    [("F411", "F411", "F41.1"), ("F41.1", "F411", "F41.1"), ("F320", "F320", "F32.0"),
     ("F32.0", "F320", "F32.0"), ("F42", "F42", "F42"), ("F42X", "F42", "F42"),
     ("F431", "F431", "F43.1"), ("F43.1", "F431", "F43.1"), ("F0010", "F0010", "F00.10"),
     ("F00.10", "F0010", "F00.10")],
)  # fmt: skip
def test_either_icd10_form_in_dataset_form_in_facts_fhir_form_in_reason_code(given, dataset, fhir):
    f = _referral(given)
    assert f.presenting_problem == dataset
    sr = build(f).service_request
    assert sr["reasonCode"] == [{"coding": [{"system": codes.ICD10, "code": fhir}]}]
    assert_valid_r4(sr)


def test_the_build_normalises_even_facts_that_skipped_the_model():
    # model_copy does not run validators: the referral checks normalise on their own
    sr = build(facts(presenting_problem="F32.0")).service_request
    assert sr["reasonCode"][0]["coding"][0]["code"] == "F32.0"


@pytest.mark.parametrize(
    "problem",
    ["anxiety", "F4.11", "F41.", "F41..1", "41.1", "FF411", "F41111", "F41.111", "f41.1", "F 411",
     "F41-1", ""],
)  # fmt: skip
def test_malformed_icd10_is_quarantined_naming_the_field(problem):
    f = _referral(problem)
    assert f.presenting_problem == problem  # tidied only when ICD-10 shaped, never guessed
    with pytest.raises(RecordValidationError) as caught:
        build(f)
    error = caught.value
    assert (error.field, error.code, error.record) == ("presenting_problem", "code", "SR0000123")
    if problem.strip():
        assert problem not in str(error)
