"""The internal FHIR R4 model (UK Core conventions): the one package that knows FHIR.

Everything outside ``domain`` handles resources as plain JSON dicts; only this package
imports ``fhir.resources``. It builds our resources from canonical facts, checks NHS
numbers and outcome scores, and validates what the provider platform sends back, so the
rules that protect patients live in one place and are tested once.

Submodules: ``ids`` (deterministic ids), ``nhs_number``, ``icd10`` (its two code forms),
``measures`` (outcome-measure table and scoring), ``referral`` and ``session`` (builders),
``validate`` (checks on untrusted FHIR), ``codes`` (systems and code lists), ``facts``
(mapping output).
"""

from ehr_bridge.domain.ids import artefact_key, resource_id
from ehr_bridge.domain.measures import (
    MEASURES,
    MEASURES_VERSION,
    Measure,
    measure_coding,
    measure_for_code,
    total_from_items,
)
from ehr_bridge.domain.nhs_number import check_nhs_number, is_valid_nhs_number
from ehr_bridge.domain.referral import (
    ProviderRef,
    ReferralResources,
    build_referral_resources,
    referral_bundle,
)
from ehr_bridge.domain.session import (
    build_encounter,
    build_episode_end,
    build_note,
    build_score,
    session_bundle,
)
from ehr_bridge.domain.validate import (
    SessionArtefacts,
    note_text,
    parse_session_bundle,
    questionnaire_items,
    validate_resource,
)

__all__ = [
    "MEASURES",
    "MEASURES_VERSION",
    "Measure",
    "ProviderRef",
    "ReferralResources",
    "SessionArtefacts",
    "artefact_key",
    "build_encounter",
    "build_episode_end",
    "build_note",
    "build_referral_resources",
    "build_score",
    "check_nhs_number",
    "is_valid_nhs_number",
    "measure_coding",
    "measure_for_code",
    "note_text",
    "parse_session_bundle",
    "questionnaire_items",
    "referral_bundle",
    "resource_id",
    "session_bundle",
    "total_from_items",
    "validate_resource",
]
