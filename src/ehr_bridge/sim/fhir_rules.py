"""The simulated FHIR trust's business rules for what clients write: scores and risk alerts.

A trust's FHIR facade files a score under the assessment tool its code names, so it
refuses what it cannot file safely, as a strict simulator should: a total coded with a
LOINC *panel* code (the whole questionnaire, not its total), codings that name two
different tools, a score outside its tool's range, or a score coded only in systems the
trust does not know. Errors name the element path and the rule, never the value.

A risk alert is a safety Flag and the Task that puts it before the duty team. The trust
files a Flag only as a coded safety flag on a patient, and takes a Task on a Flag only as
an order with a priority its duty rota knows (``routine``, ``urgent``, ``asap``, ``stat``).

The codes are the trust's own list, restated here rather than read from the engine's
measure catalogue: the simulator stands for someone else's system, so a wrong code in the
catalogue must show up as a refusal here, not leak into the check.
"""

from __future__ import annotations

from typing import Any

from ehr_bridge.sim import records as tools
from ehr_bridge.sim.fhir_store import FhirSimError, JsonDict, checked
from ehr_bridge.sim.records import ToolRule

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
#: the local code system this trust agreed with the provider for tools without national
#: codes (WSAS and the anxiety-disorder-specific measures); codes in it not listed below
#: name nothing this trust files
AGREED_LOCAL = "https://fhir.ehr-bridge.dev/CodeSystem/outcome-measure"
#: (system, code) -> the tool's limits (the published scales, ``sim.records``)
KNOWN_TOOLS: dict[tuple[str, str], ToolRule] = {
    (SNOMED, "720433000"): tools.PHQ9,
    (LOINC, "44261-6"): tools.PHQ9,
    (SNOMED, "445455005"): tools.GAD7,
    (LOINC, "70274-6"): tools.GAD7,
    (AGREED_LOCAL, "phq9"): tools.PHQ9,
    (AGREED_LOCAL, "gad7"): tools.GAD7,
    (AGREED_LOCAL, "wsas"): tools.WSAS,
    (AGREED_LOCAL, "pdss"): tools.PDSS,
    (AGREED_LOCAL, "spin"): tools.SPIN,
    (AGREED_LOCAL, "mi"): tools.MI_ALONE,
    (AGREED_LOCAL, "iesr"): tools.IESR,
    (AGREED_LOCAL, "pcl5"): tools.PCL5,
    (AGREED_LOCAL, "hai"): tools.SHORT_HAI,
}
PANEL_CODES = frozenset({"44249-1", "69737-5"})
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
#: request priorities the duty rota sorts Tasks on a Flag by
TASK_PRIORITIES = frozenset({"routine", "urgent", "asap", "stat"})


def checked_write(resource: object, path: str = "") -> JsonDict:
    """A resource a client writes: parsed as any FHIR server would, then this trust's rules."""
    parsed = checked(resource, path)
    kind = parsed.get("resourceType")
    if kind == "Observation":
        check_observation(parsed, path or "Observation")
    elif kind == "Flag":
        check_flag(parsed, path or "Flag")
    elif kind == "Task" and _reference(parsed.get("focus")).startswith(("Flag/", "urn:uuid:")):
        check_risk_task(parsed, path or "Task")
    return parsed


def check_flag(resource: JsonDict, path: str = "Flag") -> None:
    """A flag this trust files: a safety flag, coded in SNOMED CT, on a patient (422)."""
    categories = [
        (c.get("system"), c.get("code"))
        for concept in resource.get("category") or []
        for c in (concept.get("coding") or [])
        if isinstance(c, dict)
    ]
    if (FLAG_CATEGORY, "safety") not in categories:
        raise FhirSimError(422, "business-rule", "only safety flags are filed", f"{path}.category")
    if not any(system == SNOMED for system, _ in _codings(resource)):
        raise FhirSimError(422, "code-invalid", "a flag needs a SNOMED CT code", f"{path}.code")
    if not _reference(resource.get("subject")).startswith("Patient/"):
        raise FhirSimError(422, "business-rule", "a flag is on a patient", f"{path}.subject")


def check_risk_task(resource: JsonDict, path: str = "Task") -> None:
    """A Task on a Flag: an order for the duty team with a priority it sorts by (422)."""
    if resource.get("intent") != "order":
        raise FhirSimError(422, "business-rule", "a risk task is an order", f"{path}.intent")
    if resource.get("priority") not in TASK_PRIORITIES:
        raise FhirSimError(
            422, "business-rule", "a risk task needs its priority", f"{path}.priority"
        )


def check_observation(resource: JsonDict, path: str = "Observation") -> None:
    """Refuse a total score this trust could not file under the right tool (422)."""
    codings = _codings(resource)
    found = set()
    for index, (system, code) in enumerate(codings):
        where = f"{path}.code.coding[{index}]"
        if system == LOINC and code in PANEL_CODES:
            raise FhirSimError(422, "business-rule", "a panel code cannot code a total", where)
        if (system, code) in KNOWN_TOOLS:
            found.add(KNOWN_TOOLS[(system, code)])
    if len(found) > 1:
        raise FhirSimError(422, "business-rule", "codings name different tools", f"{path}.code")
    if not found:
        raise FhirSimError(
            422, "code-invalid", "no assessment tool this trust knows", f"{path}.code"
        )
    (rule,) = found
    value = _number((resource.get("valueQuantity") or {}).get("value"))
    if value is None or not _in_range(value, rule):
        raise FhirSimError(
            422, "business-rule", "score outside the tool's range", f"{path}.valueQuantity.value"
        )


def _in_range(value: float, rule: ToolRule) -> bool:
    """Within the tool's range; whole unless the tool's total may be a decimal (2 places)."""
    if not rule.min_score <= value <= rule.max_score:
        return False
    return round(value, 2) == value if rule.decimal else value == int(value)


def _codings(resource: JsonDict) -> list[tuple[Any, Any]]:
    coding = (resource.get("code") or {}).get("coding") or []
    return [(c.get("system"), c.get("code")) for c in coding if isinstance(c, dict)]


def _reference(value: object) -> str:
    reference = value.get("reference") if isinstance(value, dict) else None
    return reference if isinstance(reference, str) else ""


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
