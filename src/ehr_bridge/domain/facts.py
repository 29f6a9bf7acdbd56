"""Canonical referral facts: what an inbound mapping must produce, whatever the trust system.

Mappings translate a trust's own record into these few fields; the domain builders then
make UK Core FHIR from them. Keeping FHIR construction out of mapping files means an
integrator adding a record system maps field names and code lists, and every connection
still emits the same, schema-valid resources.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ehr_bridge.domain.icd10 import normalised_or_unchanged


class _Facts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PatientFacts(_Facts):
    """The patient as the trust holds them."""

    local_id: str = Field(description="The trust's own patient id (data set LocalPatientId)")
    nhs_number: str | None = Field(
        default=None, description="10 digits, Modulus 11 checked by the domain"
    )
    nhs_number_status: str | None = Field(
        default=None, description="UKCore-NHSNumberVerificationStatusEngland code 01-08"
    )
    family_name: str | None = None
    given_names: list[str] = Field(default_factory=list)
    birth_date: date | None = None
    gender: str | None = Field(
        default=None, description="FHIR administrative gender: male|female|other|unknown"
    )
    postcode: str | None = None
    phone: str | None = None
    email: str | None = None


class ReferralFacts(_Facts):
    """One "referred on to" referral as the trust holds it."""

    trust_referral_id: str = Field(description="The trust's ServiceRequestId")
    source_version: str | None = Field(default=None, description="Trust record version, if any")
    received_date: date = Field(description="ReferralRequestReceivedDate")
    source_of_referral: str = Field(description="Data set SourceOfReferralMH code, e.g. A1, B1")
    source_of_referral_snomed: str | None = Field(
        default=None, description="SNOMED CT concept for the source, from the mapping's code map"
    )
    presenting_problem: str | None = Field(
        default=None,
        description="ICD-10 code in the data-set form (F411); F41.1 is accepted and tidied",
    )
    status: str = Field(
        default="active", description="FHIR ServiceRequest status: active|completed|revoked"
    )
    referred_on_to: str = Field(description="Provider code the referral is referred on to")
    referred_on_date: date | None = None
    end_code: str | None = Field(default=None, description="Data set EndCode when discharged")
    discharge_date: date | None = None
    updated_at: datetime | None = Field(
        default=None, description="When the trust last changed the record (cursor)"
    )
    patient: PatientFacts

    @field_validator("presenting_problem")
    @classmethod
    def _dataset_form(cls, value: str | None) -> str | None:
        """Every mapping's ICD-10 in one form (F32.0 -> F320): see ``domain.icd10``.

        Only tidies: a value that is not ICD-10 shaped is kept, so the referral checks
        quarantine it naming ``presenting_problem`` rather than the model rejecting it.
        """
        return normalised_or_unchanged(value)
