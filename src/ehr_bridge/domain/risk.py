"""Risk events: what in a provider's session bundle the trust's duty team must see today.

A patient in typed therapy who discloses thoughts of self-harm must be seen by the
referring service's duty clinician the same day, not in the next routine write-back.
A risk event comes from what the provider sends (an active ``Flag``, a ``RiskAssessment``
or a ``DetectedIssue``) or from a rule over questionnaire items (PHQ-9 item 9 at 1 or more
by default; rules are data, per connection). Each becomes one internal UK Core ``Flag`` of
ours, with a level (``routine_review``, ``urgent``, ``immediate``), the referral, the
session where known, and no free text beyond what the provider marked as shareable (the
``risk-shareable-text`` extension). The Flag's id is derived from its source, so the same
risk sent again is the same event and is written back once.

The checks of the provider's risk resources live here too (``validate`` calls them):
a risk resource that cannot be read refuses its bundle, and the engine treats a refused
bundle that held one as a risk of its own (it pages at once), never as a routine row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from ehr_bridge.domain.codes import EHR_BRIDGE_FHIR_BASE, SNOMED, UKCORE_PROFILE
from ehr_bridge.domain.fhir_checks import (
    coding_in,
    invalid,
    lookup,
    questionnaire_items,
    reference_id,
)
from ehr_bridge.domain.measures import MEASURES, Measure

JsonDict = dict[str, Any]
RiskLevel = Literal["routine_review", "urgent", "immediate"]
#: lowest first: a later level outranks an earlier one
LEVELS: tuple[RiskLevel, ...] = get_args(RiskLevel)
#: FHIR request priority of a level (Task.priority; HL7 table 0485 follows from it)
PRIORITY: Mapping[RiskLevel, str] = {
    "routine_review": "routine",
    "urgent": "urgent",
    "immediate": "stat",
}
#: the closed list of reasons a risk event carries (``risk-reason``)
REASONS = ("phq9_item9", "questionnaire_item", "provider_flag", "risk_assessment", "detected_issue")

RISK_LEVEL_EXTENSION = f"{EHR_BRIDGE_FHIR_BASE}/StructureDefinition/risk-level"
RISK_REASON_EXTENSION = f"{EHR_BRIDGE_FHIR_BASE}/StructureDefinition/risk-reason"
SHAREABLE_TEXT_EXTENSION = f"{EHR_BRIDGE_FHIR_BASE}/StructureDefinition/risk-shareable-text"
#: the referral a Flag or DetectedIssue belongs to (neither has a basedOn in R4)
REFERRAL_EXTENSION = f"{EHR_BRIDGE_FHIR_BASE}/StructureDefinition/referral"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
#: SNOMED CT 6471006 |Suicidal thoughts (finding)|: what PHQ-9 item 9 asks about
SUICIDAL_THOUGHTS = ("6471006", "Suicidal thoughts")
#: the provider's risk resource types, and where each names its patient
RISK_TYPES: Mapping[str, str] = {
    "Flag": "subject",
    "RiskAssessment": "subject",
    "DetectedIssue": "patient",
}
#: longest shareable text we carry: a line for the duty team, not a note
MAX_SHAREABLE_TEXT = 500

_PROBABILITY_LEVEL: Mapping[str, RiskLevel | None] = {
    "negligible": None,
    "low": "routine_review",
    "moderate": "urgent",
    "high": "immediate",
    "certain": "immediate",
}
_SEVERITY_LEVEL: Mapping[str, RiskLevel] = {
    "low": "routine_review",
    "moderate": "urgent",
    "high": "immediate",
}
#: statuses under which a provider's resource no longer raises a risk
_CLOSED = frozenset({"inactive", "cancelled", "entered-in-error"})
_TIME_OF: Mapping[str, str] = {
    "Flag": "period.start",
    "RiskAssessment": "occurrenceDateTime",
    "DetectedIssue": "identifiedDateTime",
}
_REASON_OF: Mapping[str, str] = {
    "Flag": "provider_flag",
    "RiskAssessment": "risk_assessment",
    "DetectedIssue": "detected_issue",
}


@dataclass(frozen=True)
class ItemRule:
    """A questionnaire answer that raises a risk: ``measure`` item ``item`` >= ``at_least``."""

    measure: str
    item: int
    at_least: int
    level: RiskLevel
    #: the SNOMED CT concept (code, display) of the risk; PHQ-9 item 9's is Suicidal thoughts
    concept: tuple[str, str] | None = None

    @property
    def reason(self) -> str:
        """The ``risk-reason`` code: the trust's list knows PHQ-9 item 9 by name."""
        return "phq9_item9" if (self.measure, self.item) == ("phq9", 9) else "questionnaire_item"

    @property
    def coding(self) -> tuple[str, str]:
        """The risk's SNOMED CT concept; only PHQ-9 item 9 has one without configuration."""
        if self.concept is not None:
            return self.concept
        if self.reason == "phq9_item9":
            return SUICIDAL_THOUGHTS
        raise ValueError(f"a rule on {self.measure} item {self.item} needs its SNOMED concept")


#: what a connection uses unless it lists its own ``[[connection.risk.rules]]``
DEFAULT_RULES: tuple[ItemRule, ...] = (ItemRule("phq9", 9, 1, "urgent"),)


@dataclass(frozen=True)
class RiskEvent:
    """One risk for the trust's duty team: our Flag, and what the write-back says of it."""

    flag: JsonDict
    level: RiskLevel
    reason: str
    #: the provider resource it came from ("QuestionnaireResponse/<id>", "Flag/<id>")
    source: str
    raised_at: str
    encounter_id: str | None = None
    summary: str | None = None

    @property
    def id(self) -> str:
        """Our Flag's id, derived from the source: the key of its write-back."""
        flag_id: str = self.flag["id"]
        return flag_id

    def context(self) -> JsonDict:
        """The outbound mapping's ``context`` for a ``risk_alert`` (no patient data)."""
        return {
            "level": self.level,
            "priority": PRIORITY[self.level],
            "reason": self.reason,
            "raised_at": self.raised_at,
            "summary": self.summary,
        }


def check_rules(rules: Iterable[ItemRule], table: Mapping[str, Measure] = MEASURES) -> None:
    """Refuse a rule that could never fire: unknown measure, item or answer out of range."""
    for rule in rules:
        measure = table.get(rule.measure)
        if measure is None:
            raise ValueError(f"unknown measure {rule.measure!r} (known: {', '.join(table)})")
        if not 1 <= rule.item <= measure.item_count:
            raise ValueError(f"{rule.measure} has items 1..{measure.item_count}, not {rule.item}")
        if not measure.item_min < rule.at_least <= measure.item_max:
            span = f"{measure.item_min + 1}..{measure.item_max}"
            raise ValueError(f"{rule.measure} at_least must be in {span}, not {rule.at_least}")
        if rule.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        code, display = rule.coding
        if not (code.isdigit() and 6 <= len(code) <= 18 and display.strip()):
            raise ValueError("a rule's concept is a SNOMED CT id (6-18 digits) and its display")


# --- the provider's risk resources -----------------------------------------------------
def check_risk_resource(resource: JsonDict, prefix: str) -> JsonDict:
    """A provider risk resource we can act on: coded, timed, its level readable."""
    _snomed_code(resource, prefix)
    if not lookup(resource, _TIME_OF[resource["resourceType"]]):
        path = f"{prefix}.{_TIME_OF[resource['resourceType']]}"
        raise invalid(path, "a risk needs the time it was recorded", "required")
    _provider_level(resource, prefix)
    _shareable_text(resource, prefix)
    return resource


def risk_links(resource: JsonDict, prefix: str) -> tuple[str, str | None]:
    """(patient id, referral id or None) a risk resource names; None: the bundle's referral."""
    kind = resource["resourceType"]
    patient_key = RISK_TYPES[kind]
    patient = reference_id(resource.get(patient_key), "Patient", f"{prefix}.{patient_key}")
    if kind == "RiskAssessment" and resource.get("basedOn") is not None:
        path = f"{prefix}.basedOn"
        return patient, reference_id(resource["basedOn"], "ServiceRequest", path)
    linked = _extensions(resource, REFERRAL_EXTENSION)
    if not linked:
        return patient, None
    path = f"{prefix}.extension(referral)"
    if len(linked) > 1:
        raise invalid(path, "names more than one referral", "reference")
    return patient, reference_id(linked[0].get("valueReference"), "ServiceRequest", path)


def _extensions(resource: JsonDict, url: str) -> list[JsonDict]:
    return [e for e in resource.get("extension") or [] if e.get("url") == url]


def _snomed_code(resource: JsonDict, prefix: str) -> JsonDict:
    concepts = [("code", resource.get("code"))]
    if resource["resourceType"] == "RiskAssessment":
        concepts += [
            (f"prediction[{i}].outcome", p.get("outcome"))
            for i, p in enumerate(resource.get("prediction") or [])
        ]
    for _, concept in concepts:
        coding = coding_in(concept, SNOMED)
        if coding is not None and coding.get("code"):
            return coding
    raise invalid(f"{prefix}.code", "a risk needs a SNOMED CT coding", "risk_code")


def _provider_level(resource: JsonDict, prefix: str) -> RiskLevel | None:
    """The level the provider gave (extension, prediction, severity); None: no risk now."""
    stated = _extensions(resource, RISK_LEVEL_EXTENSION)
    if stated:
        code = stated[0].get("valueCode")
        if len(stated) > 1 or code not in LEVELS:
            path = f"{prefix}.extension(risk-level)"
            raise invalid(path, f"risk level must be one of {', '.join(LEVELS)}", "code")
        level: RiskLevel = code
        return level
    kind = resource["resourceType"]
    if kind == "RiskAssessment":
        return _predicted_level(resource, prefix)
    if kind == "DetectedIssue" and resource.get("severity") is not None:
        return _SEVERITY_LEVEL[resource["severity"]]  # the model allows only these three
    return "urgent"


def _predicted_level(resource: JsonDict, prefix: str) -> RiskLevel | None:
    """The highest qualitative risk predicted; urgent when none is given, None if negligible."""
    found: list[RiskLevel | None] = []
    for index, prediction in enumerate(resource.get("prediction") or []):
        coding = coding_in(prediction.get("qualitativeRisk"), RISK_PROBABILITY)
        if prediction.get("qualitativeRisk") is None:
            continue
        if coding is None or coding.get("code") not in _PROBABILITY_LEVEL:
            path = f"{prefix}.prediction[{index}].qualitativeRisk"
            raise invalid(path, "qualitative risk must be a risk-probability code", "code")
        found.append(_PROBABILITY_LEVEL[coding["code"]])
    if not found:
        return "urgent"
    levels = [level for level in found if level is not None]
    return max(levels, key=LEVELS.index) if levels else None


def _shareable_text(resource: JsonDict, prefix: str) -> str | None:
    marked = _extensions(resource, SHAREABLE_TEXT_EXTENSION)
    if not marked:
        return None
    text = marked[0].get("valueString")
    path = f"{prefix}.extension(risk-shareable-text)"
    if len(marked) > 1 or not isinstance(text, str) or not text.strip():
        raise invalid(path, "shareable text must be one non-empty string", "risk_text")
    if len(text) > MAX_SHAREABLE_TEXT or any(ord(c) < 32 and c not in "\t" for c in text):
        reason = f"shareable text must be one line of at most {MAX_SHAREABLE_TEXT} characters"
        raise invalid(path, reason, "risk_text")
    return text


# --- events ----------------------------------------------------------------------------
def risk_events(
    patient_id: str,
    risks: Sequence[JsonDict],
    responses: Sequence[JsonDict],
    rules: Sequence[ItemRule] = DEFAULT_RULES,
    table: Mapping[str, Measure] = MEASURES,
) -> list[RiskEvent]:
    """Every risk a checked bundle raises, once each, in the bundle's order."""
    events = [e for r in risks if (e := _provider_event(patient_id, r)) is not None]
    events += [e for qr in responses if (e := _item_event(patient_id, qr, rules, table))]
    return events


def _provider_event(patient_id: str, resource: JsonDict) -> RiskEvent | None:
    if resource.get("status") in _CLOSED:
        return None
    level = _provider_level(resource, "")
    if level is None:
        return None
    kind = resource["resourceType"]
    coding = _snomed_code(resource, "")
    encounter = resource.get("encounter")
    return _event(
        source=f"{kind}/{resource['id']}",
        patient_id=patient_id,
        coding=(coding["code"], coding.get("display") or ""),
        raised_at=lookup(resource, _TIME_OF[kind]),
        encounter_id=reference_id(encounter, "Encounter", "encounter") if encounter else None,
        level=level,
        reason=_REASON_OF[kind],
        summary=_shareable_text(resource, ""),
    )


def _item_event(
    patient_id: str, response: JsonDict, rules: Sequence[ItemRule], table: Mapping[str, Measure]
) -> RiskEvent | None:
    """The highest level the response's answers reach under the rules, if any."""
    fired = [rule for rule in rules if _fires(rule, response, table)]
    if not fired:
        return None
    rule = max(fired, key=lambda r: LEVELS.index(r.level))
    encounter = response.get("encounter")
    return _event(
        source=f"QuestionnaireResponse/{response['id']}",
        patient_id=patient_id,
        coding=rule.coding,
        raised_at=response.get("authored") or datetime.now(UTC).isoformat(timespec="seconds"),
        encounter_id=reference_id(encounter, "Encounter", "encounter") if encounter else None,
        level=rule.level,
        reason=rule.reason,
    )


def _fires(rule: ItemRule, response: JsonDict, table: Mapping[str, Measure]) -> bool:
    measure = table.get(rule.measure)
    if measure is None or response.get("questionnaire") != measure.questionnaire_url:
        return False
    answers = questionnaire_items(response)
    answer = answers[rule.item - 1] if len(answers) >= rule.item else None
    return answer is not None and answer >= rule.at_least


def _event(
    *,
    source: str,
    patient_id: str,
    coding: tuple[str, str],
    raised_at: str,
    encounter_id: str | None,
    level: RiskLevel,
    reason: str,
    summary: str | None = None,
) -> RiskEvent:
    flag_id = "risk-" + hashlib.sha256(f"{source}|{reason}".encode()).hexdigest()[:32]
    extension: list[JsonDict] = [
        {"url": RISK_LEVEL_EXTENSION, "valueCode": level},
        {"url": RISK_REASON_EXTENSION, "valueCode": reason},
    ]
    if summary is not None:
        extension.append({"url": SHAREABLE_TEXT_EXTENSION, "valueString": summary})
    flag: JsonDict = {
        "resourceType": "Flag",
        "id": flag_id,
        "meta": {"profile": [UKCORE_PROFILE.format("Flag")]},
        "extension": extension,
        "status": "active",
        "category": [
            {"coding": [{"system": FLAG_CATEGORY, "code": "safety", "display": "Safety"}]}
        ],
        "code": {"coding": [{"system": SNOMED, "code": coding[0], "display": coding[1]}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": raised_at},
    }
    if encounter_id is not None:
        flag["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    return RiskEvent(flag, level, reason, source, raised_at, encounter_id, summary)
