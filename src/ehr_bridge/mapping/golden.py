"""Golden fixtures beside a mapping: run them, and say what the mapping never uses.

A mapping ``acme.yaml`` has its cases in ``acme.golden/``: ``<case>.input.json`` with
``<case>.facts.json`` (a trust record and the expected ``ReferralFacts``; optionally also
``<case>.fhir.json``, the expected referral bundle for connection ``golden-trust``) or
``<case>.payload.json`` (an outbound ``{"kind", "resource", "context"}`` and the expected
payload). Besides pass or fail per case, the report lists the source fields of the inputs
that no rule reads and the rules that never produced a value: both are how an integrator
finds what a new record system sends that the mapping ignores, or a rule with a typo in
its path that silently maps nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ehr_bridge.errors import ConfigError, RecordError
from ehr_bridge.mapping.apply import CompiledRule, Mapping, _RuleFailure, evaluate
from ehr_bridge.mapping.fields import reads, unread
from ehr_bridge.mapping.preview import Change, changes, outbound_kind, preview

#: the golden FHIR files' reference date (a referral received later would be "in the future")
GOLDEN_TODAY = date(2026, 11, 26)


@dataclass
class CaseResult:
    """One golden case: which file, which section, and how it differed from the expectation."""

    name: str
    section: str  # "inbound" or the outbound kind
    error: str | None = None  # the mapping or validation error, value-free
    differences: dict[str, list[Change]] = field(default_factory=dict)  # expected file -> diff

    @property
    def passed(self) -> bool:
        """No error and every expected file matched."""
        return self.error is None and not any(self.differences.values())


@dataclass
class GoldenReport:
    """Every case's result, plus coverage: unread source fields and rules that never fired."""

    cases: list[CaseResult]
    unread_fields: dict[str, list[str]]
    never_fired: dict[str, list[str]]

    @property
    def passed(self) -> bool:
        """True when every case passed (coverage findings are advice, not failures)."""
        return all(case.passed for case in self.cases)


def golden_dir(mapping_path: Path) -> Path:
    """Where a mapping's fixtures live: ``<name>.golden/`` beside the file."""
    return mapping_path.with_name(mapping_path.stem + ".golden")


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"not a readable JSON file ({type(exc).__name__})", key=str(path)
        ) from None


def run_golden(mapping: Mapping, folder: Path, *, today: date = GOLDEN_TODAY) -> GoldenReport:
    """Run every case in ``folder``; a case without an expected file fails.

    Raises:
        ConfigError: a fixture file is not JSON (the key names the file).
    """
    inputs = sorted(folder.glob("*.input.json"))
    documents: dict[str, list[Any]] = {}
    results = []
    for path in inputs:
        name = path.name.removesuffix(".input.json")
        document = _load(path)
        section = outbound_kind(document) or "inbound"
        documents.setdefault(section, []).append(_source(document, section))
        results.append(_run_case(mapping, folder, name, section, document, today))
    results.extend(_orphans(folder, {p.name.removesuffix(".input.json") for p in inputs}))
    return GoldenReport(
        cases=results,
        unread_fields={
            s: unread(docs, _section_reads(mapping, s)) for s, docs in documents.items()
        },
        never_fired=_never_fired(mapping, documents),
    )


def _source(document: Any, section: str) -> Any:
    """The document the section's rules read (outbound: just resource and context)."""
    if section == "inbound":
        return document
    return {"resource": document.get("resource") or {}, "context": document.get("context")}


def _run_case(
    mapping: Mapping, folder: Path, name: str, section: str, document: Any, today: date
) -> CaseResult:
    result = CaseResult(name, section)
    expected = {
        suffix: folder / f"{name}.{suffix}.json"
        for suffix in (("facts", "fhir") if section == "inbound" else ("payload",))
    }
    expected = {suffix: path for suffix, path in expected.items() if path.is_file()}
    if not expected:
        result.error = "no expected file (.facts.json or .payload.json) beside the input"
        return result
    try:
        shown = preview(mapping, document, today=today)
    except (RecordError, ConfigError) as exc:
        result.error = exc.safe_message
        return result
    produced = {"facts": shown.facts, "fhir": shown.output, "payload": shown.output}
    for suffix, path in expected.items():
        result.differences[f"{name}.{suffix}.json"] = changes(_load(path), produced[suffix])
    return result


def _orphans(folder: Path, names: set[str]) -> list[CaseResult]:
    """Expected files without an input: a renamed or deleted case."""
    found = []
    for suffix in ("facts", "fhir", "payload"):
        for path in sorted(folder.glob(f"*.{suffix}.json")):
            name = path.name.removesuffix(f".{suffix}.json")
            if name not in names:
                found.append(CaseResult(name, "?", error=f"{path.name} has no {name}.input.json"))
    return found


def _section_reads(mapping: Mapping, section: str) -> set[str]:
    found = {p for rule in mapping.rules(section) for p in _rule_reads(rule.expression)}
    if section == "inbound":
        for expression in mapping.record_expressions().values():
            found |= reads(expression)
    return found


def _rule_reads(expression: Any) -> set[str]:
    return set() if expression is None else reads(expression)


def _never_fired(mapping: Mapping, documents: dict[str, list[Any]]) -> dict[str, list[str]]:
    """Per section with inputs: targets whose rule produced no value for any of them."""
    silent: dict[str, list[str]] = {}
    for section, docs in documents.items():
        rules = mapping.rules(section)
        fired = {rule.target for rule in rules for doc in docs if _fires(rule, doc)}
        silent[section] = [rule.target for rule in rules if rule.target not in fired]
    return silent


def _fires(rule: CompiledRule, document: Any) -> bool:
    try:
        return evaluate(rule, document) is not None
    except _RuleFailure:  # a failing rule did not fire; the case result reports the failure
        return False
