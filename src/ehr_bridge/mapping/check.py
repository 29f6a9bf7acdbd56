"""``mapping check``: what loading cannot see, found before any record is mapped.

Loading already refuses a malformed file (schema, JMESPath, transforms, code-map names,
targets). These checks read the code maps against what each side really uses:

- **inbound**: a code map (or constant) feeding a target with a closed value set must only
  produce values from it (``patient.gender`` -> a FHIR gender, ``end_code`` -> a data-set
  EndCode), or every record using that code would be quarantined.
- **outbound**: a code map translating one of our code lists (AppType, AttendOrDNACode,
  ConsMechanism, EndCode, measures, status events) with ``on_unmapped: error`` must hold
  every code we can send, or those write-backs would be dead-lettered. The check runs the
  rule's own later transforms on each of our codes first, so a ``strip_leading_zeros``
  before the map is taken into account.
- **unused code maps** and an ``api:`` section that misses an outbound kind, or gives no
  read-back endpoints (so ``reconcile`` or ``quarantine retry`` cannot read the system),
  are warnings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ehr_bridge.domain import codes
from ehr_bridge.domain.measures import measure_table
from ehr_bridge.mapping.api import Api
from ehr_bridge.mapping.apply import CompiledRule, Mapping
from ehr_bridge.mapping.schema import (
    OPTIONAL_KINDS,
    OUTBOUND_KINDS,
    RISK_LEVELS,
    RISK_PRIORITIES,
    RISK_REASONS,
)
from ehr_bridge.mapping.transforms import EXTENSION_ALIASES, SYSTEM_ALIASES, BoundTransform

_GENDERS = frozenset({"male", "female", "other", "unknown"})
_REQUEST_STATUSES = frozenset(
    {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
)
#: inbound targets with a closed value set: target -> (what it must be, allowed set or regex)
_INBOUND_VALUES: dict[str, tuple[str, Any]] = {
    "patient.gender": ("a FHIR administrative gender", _GENDERS),
    "status": ("a FHIR request status (active, completed, revoked...)", _REQUEST_STATUSES),
    "patient.nhs_number_status": (
        "an NHS number status 01..08",
        codes.NHS_NUMBER_VERIFICATION_DISPLAY,
    ),
    "end_code": ("a data-set EndCode", codes.END_CODE_DISPLAY),
    "source_of_referral": ("a data-set SourceOfReferralMH code", re.compile(r"[A-M][0-9]")),
    "source_of_referral_snomed": ("a SNOMED CT concept id", re.compile(r"[1-9][0-9]{5,17}")),
    "presenting_problem": (
        "an ICD-10 code (F32.0 or F320)",
        re.compile(r"[A-Z][0-9]{2}(\.[0-9A-Z]{1,2}|[0-9A-Z]{0,2})"),  # as domain.icd10
    ),
}
#: our code lists by the code system or extension a rule extracts them with
_BY_SYSTEM: dict[str, Iterable[str]] = {
    codes.DATASET_APPOINTMENT_TYPE: codes.APPOINTMENT_TYPE_DISPLAY,
    codes.DATASET_CONSULTATION_MECHANISM: codes.CONSULTATION_MECHANISM_DISPLAY,
    codes.DATASET_END_CODE: codes.END_CODE_DISPLAY,
}
_BY_EXTENSION: dict[str, Iterable[str]] = {
    codes.ATTENDANCE_EXTENSION: codes.ATTENDANCE_DISPLAY,
    codes.END_CODE_EXTENSION: codes.END_CODE_DISPLAY,
}
#: our code lists by the context key a rule reads
_BY_CONTEXT: dict[str, Iterable[str]] = {
    "context.status": ("received", "accepted", "discharged"),
    "context.end_code": codes.END_CODE_DISPLAY,
    # risk_alert (docs/mapping-language.md): the risk level, its FHIR request priority and
    # why it was raised; a code map missing one would dead-letter that risk's write-back
    "context.level": RISK_LEVELS,
    "context.priority": RISK_PRIORITIES,
    "context.reason": RISK_REASONS,
}


@dataclass(frozen=True)
class Finding:
    """One problem: ``error`` (records would fail) or ``warning`` (worth a look)."""

    level: str
    key: str  # file:section.rule, like load errors
    message: str


def check_mapping(mapping: Mapping, *, adsm_enabled: bool = False) -> list[Finding]:
    """Every finding for a loaded mapping, errors first.

    ``adsm_enabled``: the service uses the anxiety-disorder-specific measures, so their
    scores reach write-back too and the mapping needs a code for each.
    """
    found = [*_inbound_values(mapping), *_outbound_coverage(mapping, adsm_enabled)]
    found += [*_unused_code_maps(mapping), *_api_coverage(mapping)]
    return sorted(found, key=lambda f: (f.level != "error", f.key))


def _key(mapping: Mapping, where: str) -> str:
    return f"{mapping.path}:{where}"


def _allowed(value: str, test: Any) -> bool:
    return bool(test.fullmatch(value)) if isinstance(test, re.Pattern) else value in test


def _inbound_values(mapping: Mapping) -> list[Finding]:
    found = []
    for rule in mapping.rules("inbound"):
        if rule.target not in _INBOUND_VALUES:
            continue
        what, test = _INBOUND_VALUES[rule.target]
        produced = list(rule.code_map.values()) if rule.code_map else []
        produced += [rule.const] if isinstance(rule.const, str) else []
        bad = sorted({v for v in produced if not _allowed(v, test)})
        if bad:
            where = f"code map {rule.code_map_name}" if rule.code_map else "const"
            found.append(Finding(
                "error", _key(mapping, f"inbound.referral.{rule.target}"),
                f"{where} gives {', '.join(map(repr, bad))}; {rule.target} must be {what}",
            ))  # fmt: skip
    return found


def _ours(
    rule: CompiledRule, adsm_enabled: bool
) -> tuple[Iterable[str], tuple[BoundTransform, ...]] | None:
    """Our code list a rule translates, and the transforms applied after extracting it."""
    if rule.source in _BY_CONTEXT:
        return _BY_CONTEXT[rule.source], rule.steps
    for index, step in enumerate(rule.steps):
        listed: Iterable[str] | None
        if step.name == "measure_code":
            listed = _measure_codes(step.args["code"], adsm_enabled)
        elif step.name == "coding_code":
            system = SYSTEM_ALIASES.get(step.args["system"], step.args["system"])
            if system == codes.OUTCOME_MEASURE_SYSTEM:  # our measure keys, as collect accepts
                listed = _measure_codes("key", adsm_enabled)
            else:
                listed = _BY_SYSTEM.get(system)
        elif step.name == "extension_value":
            listed = _BY_EXTENSION.get(EXTENSION_ALIASES.get(step.args["url"], step.args["url"]))
        else:
            continue
        return (listed, rule.steps[index + 1 :]) if listed is not None else None
    return None


def _measure_codes(code: str, adsm_enabled: bool) -> list[str]:
    """The codes ``measure_code`` can yield: of every measure collect accepts that has one."""
    table = measure_table(adsm_enabled=adsm_enabled)
    values = (getattr(m, code) for m in table.values() if m.enabled)
    return [v for v in values if v]


def _as_sent(code: str, steps: tuple[BoundTransform, ...]) -> Any:
    value: Any = code
    for step in steps:
        value = step(value) if value is not None else None
    return value


def _outbound_coverage(mapping: Mapping, adsm_enabled: bool) -> list[Finding]:
    found = []
    for kind in sorted(mapping.outbound_kinds()):
        for rule in mapping.rules(kind):
            ours = (
                _ours(rule, adsm_enabled)
                if rule.code_map is not None and rule.on_unmapped == "error"
                else None
            )
            if ours is None or rule.code_map is None:
                continue
            missing = sorted({c for c in ours[0] if str(_as_sent(c, ours[1])) not in rule.code_map})
            if missing:
                found.append(Finding(
                    "error", _key(mapping, f"outbound.{kind}.{rule.target}"),
                    f"code map {rule.code_map_name} has no entry for our code(s) "
                    f"{', '.join(missing)}; such write-backs would be dead-lettered",
                ))  # fmt: skip
    return found


def _unused_code_maps(mapping: Mapping) -> list[Finding]:
    sections = ["inbound", *sorted(mapping.outbound_kinds())]
    used = {rule.code_map_name for s in sections for rule in mapping.rules(s)}
    return [
        Finding("warning", _key(mapping, f"code_maps.{name}"), "code map is not used by any rule")
        for name in sorted(mapping.code_maps)
        if name not in used
    ]


def _api_coverage(mapping: Mapping) -> list[Finding]:
    if mapping.api is None:
        return []
    missing = [kind for kind in sorted(OUTBOUND_KINDS) if mapping.api.write(kind) is None]
    return _read_back(mapping, mapping.api) + [
        Finding(
            "warning",
            _key(mapping, f"api.writes.{kind}"),
            f"no write endpoint for {kind}; such items are never queued for this system"
            if kind in OPTIONAL_KINDS
            else f"no write endpoint for {kind}; the rest adapter refuses a mapping without one",
        )
        for kind in missing
    ]


def _read_back(mapping: Mapping, api: Api) -> list[Finding]:
    found = []
    if api.written_kinds() and not api.reads_items():
        message = (
            "no list endpoints: reconcile cannot read this system back (give writes.<kind>.list)"
        )
        found.append(Finding("warning", _key(mapping, "api.writes"), message))
    if api.spec.referral is None:
        message = "no referral endpoint: quarantine retry cannot fetch a record fixed at the trust"
        found.append(Finding("warning", _key(mapping, "api.referral"), message))
    return found
