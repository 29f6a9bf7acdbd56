"""Applying a loaded mapping: trust record -> ReferralFacts, FHIR artefact -> trust payload.

Each rule runs the same small pipeline: read (JMESPath or constant), transforms in order,
code map, default, required check. Every failure becomes a ``MappingError`` naming the
mapping, the rule and the source path, with the record known only by its id, and chained
``from None`` because foreign error texts (JMESPath, pydantic, ``fromisoformat``) quote the
offending value: a logged traceback must not leak patient data.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping as ReadOnlyMap
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jmespath.exceptions
from pydantic import ValidationError

from ehr_bridge.domain.facts import ReferralFacts
from ehr_bridge.errors import ConfigError, MappingError
from ehr_bridge.mapping.api import Api
from ehr_bridge.mapping.transforms import BoundTransform, TransformError

JsonDict = dict[str, Any]
#: the context key every outbound kind must copy into its payload (our idempotency key)
REFERENCE_PATH = "context.client_reference"
#: the inbound field that says which provider a referral is addressed to
ADDRESSEE_FIELD = "referred_on_to"
#: a JMESPath into the HL7 record shape: segment, occurrence, field number
_HL7_FIELD_PATH = re.compile(r'(?P<segment>[A-Z][A-Z0-9]{2})\[\d+\]\."(?P<field>\d+)"')


@dataclass(frozen=True)
class CompiledRule:
    """One rule after loading: expression compiled, transforms bound, code map resolved."""

    target: str
    source: str  # the JMESPath text, or "const" (named in errors, never a value)
    expression: Any  # a compiled JMESPath expression (``search``), or None for a constant
    const: Any
    steps: tuple[BoundTransform, ...]
    code_map_name: str | None
    code_map: ReadOnlyMap[str, str] | None
    on_unmapped: str
    required: bool
    default: Any
    #: ``target`` split once at load: the parent objects and the leaf key it is written to
    parents: tuple[str, ...] = field(init=False, repr=False, compare=False)
    leaf: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        *parents, leaf = self.target.split(".")
        object.__setattr__(self, "parents", tuple(parents))
        object.__setattr__(self, "leaf", leaf)


class _RuleFailure(Exception):
    """Internal: a rule could not produce its value; ``reason`` is value-free."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: values ``copy.deepcopy`` returns as they are; anything else (lists, objects) is copied
_ATOMIC = (str, int, float, type(None))


def _fresh(value: Any) -> Any:
    """A copy of a constant or default, so no record's result shares the mapping's objects."""
    return value if isinstance(value, _ATOMIC) else copy.deepcopy(value)


def _read(rule: CompiledRule, document: JsonDict) -> Any:
    if rule.expression is None:
        return _fresh(rule.const)
    try:
        return rule.expression.search(document)
    except jmespath.exceptions.JMESPathError:
        raise _RuleFailure("expression does not fit this record's shape") from None


def _transform(rule: CompiledRule, value: Any) -> Any:
    for step in rule.steps:
        if value is None:
            return None
        try:
            value = step.fn(value)  # the bound function itself: one call less per step
        except TransformError as exc:
            raise _RuleFailure(f"transform {step.name}: {exc}") from None
        except (TypeError, ValueError, ArithmeticError):
            raise _RuleFailure(f"transform {step.name} failed") from None
    return value


def _lookup(rule: CompiledRule, value: Any) -> Any:
    if rule.code_map is None or value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _RuleFailure(f"code map {rule.code_map_name} needs a code (text)")
    if str(value) in rule.code_map:
        return rule.code_map[str(value)]
    if rule.on_unmapped == "keep":
        return value
    if rule.on_unmapped == "null":
        return None
    raise _RuleFailure(f"code is not in code map {rule.code_map_name}")


def evaluate(rule: CompiledRule, document: JsonDict) -> Any:
    """The rule's value for one document; ``_RuleFailure`` says why there is none."""
    value = _read(rule, document)
    if value is not None and rule.steps:
        value = _transform(rule, value)
    if value is not None and rule.code_map is not None:
        value = _lookup(rule, value)
    if value is None:
        value = _fresh(rule.default)
        if value is None and rule.required:
            raise _RuleFailure("required value is missing")
    return value


def _assign(out: JsonDict, rule: CompiledRule, value: Any) -> None:
    for part in rule.parents:
        out = out.setdefault(part, {})
    out[rule.leaf] = value


def _as_text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)


def _search(expression: Any, document: JsonDict) -> Any:
    try:
        return None if expression is None else expression.search(document)
    except jmespath.exceptions.JMESPathError:
        return None


class Mapping:
    """A loaded, validated mapping file; build one with ``load_mapping``."""

    def __init__(
        self,
        *,
        name: str,
        path: Path,
        spec_version: int,
        record: ReadOnlyMap[str, Any],
        inbound: tuple[CompiledRule, ...],
        outbound: ReadOnlyMap[str, tuple[CompiledRule, ...]],
        api: Api | None = None,
        code_maps: ReadOnlyMap[str, ReadOnlyMap[str, str]] | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.spec_version = spec_version
        #: how the generic rest adapter calls the system (the file's ``api:`` section), if any
        self.api = api
        #: the file's code maps by name, for the toolkit's checks
        self.code_maps: ReadOnlyMap[str, ReadOnlyMap[str, str]] = code_maps or {}
        self._record = record
        self._inbound = inbound
        self._outbound = outbound

    def __repr__(self) -> str:
        return f"Mapping(name={self.name!r}, path={str(self.path)!r})"

    def record_id(self, record: JsonDict) -> str | None:
        """The trust's id for a source record, for ledger, cursor and quarantine; never raises."""
        return _as_text(_search(self._record.get("id"), record))

    def record_version(self, record: JsonDict) -> str | None:
        """The trust's version marker for a source record, if the mapping names one."""
        return _as_text(_search(self._record.get("version"), record))

    @property
    def version_field(self) -> str | None:
        """The trust's version marker as support staff know it: ``MSH-10``, or the path.

        Named in the reason when a marker comes back with different content; a path of the
        HL7 record shape (``MSH[0]."10"[0]."1"``) is named the way HL7 names fields.
        """
        compiled = self._record.get("version")
        path = getattr(compiled, "expression", compiled)  # jmespath keeps the source text
        if not isinstance(path, str):
            return None
        hl7 = _HL7_FIELD_PATH.match(path)
        return f"{hl7['segment']}-{hl7['field']}" if hl7 else path

    def record_updated_at(self, record: JsonDict) -> datetime | None:
        """When the trust last changed the record, aware UTC (naive read as UTC); never raises."""
        raw = _search(self._record.get("updated_at"), record)
        try:
            moment = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            return None
        if moment is None:
            return None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    def referral_facts(self, record: JsonDict) -> ReferralFacts:
        """Map one trust referral record to canonical facts, or raise ``MappingError``."""
        record_id = self.record_id(record)
        data = self._run(self._inbound, record, record_id)
        try:
            return ReferralFacts.model_validate(data)
        except ValidationError as exc:
            raise self._invalid(exc, record_id) from None

    def addressee(self, record: JsonDict) -> str | None:
        """The provider a referral is referred on to (rule ``referred_on_to``); never raises.

        Read on its own, before the rest of the record is mapped, so that a referral for
        another provider can be left alone without storing (or quarantining) its patient's
        data. None when the rule is absent or cannot be read.
        """
        rule = next((r for r in self._inbound if r.target == ADDRESSEE_FIELD), None)
        if rule is None:
            return None
        try:
            value = evaluate(rule, record)
        except _RuleFailure:
            return None
        return _as_text(value)

    def outbound_kinds(self) -> frozenset[str]:
        """The write-back kinds this mapping can produce payloads for."""
        return frozenset(self._outbound)

    def rules(self, section: str) -> tuple[CompiledRule, ...]:
        """The compiled rules of ``inbound`` or an outbound kind, in file order (toolkit)."""
        return self._inbound if section == "inbound" else self._outbound.get(section, ())

    def record_expressions(self) -> ReadOnlyMap[str, Any]:
        """The ``record:`` section's compiled JMESPath expressions by name (toolkit)."""
        return self._record

    def reference_target(self, kind: str) -> str | None:
        """The payload field an outbound kind writes our client reference to."""
        return next((r.target for r in self.rules(kind) if r.source == REFERENCE_PATH), None)

    def outbound(self, kind: str, resource: JsonDict, context: ReadOnlyMap[str, Any]) -> JsonDict:
        """The trust payload for one artefact; the source document is {resource, context}.

        Raises:
            ConfigError: the mapping has no rules for ``kind`` (check ``outbound_kinds``).
            MappingError: a rule failed; ``record`` is the context's client reference.
        """
        rules = self._outbound.get(kind)
        if rules is None:
            raise ConfigError("no outbound rules for this kind", key=f"{self.path}:outbound.{kind}")
        reference = _as_text(context.get("client_reference"))
        return self._run(rules, {"resource": resource, "context": dict(context)}, reference)

    def _run(
        self, rules: tuple[CompiledRule, ...], document: JsonDict, record_id: str | None
    ) -> JsonDict:
        out: JsonDict = {}
        for rule in rules:
            try:
                value = evaluate(rule, document)
            except _RuleFailure as failure:
                raise self._error(failure.reason, rule, record_id) from None
            if value is not None:
                _assign(out, rule, value)
        return out

    def _error(self, reason: str, rule: CompiledRule, record_id: str | None) -> MappingError:
        return MappingError(
            reason,
            mapping=self.name,
            rule=rule.target,
            source_path=rule.source,
            field=rule.target,
            record=record_id,
        )

    def _invalid(self, exc: ValidationError, record_id: str | None) -> MappingError:
        first = exc.errors(include_url=False, include_input=False)[0]
        loc = [str(part) for part in first["loc"] if isinstance(part, str)]
        field = ".".join(loc)
        prefixes = {".".join(loc[:i]) for i in range(1, len(loc) + 1)}
        rule = next((r for r in self._inbound if r.target in prefixes), None)
        reason = (
            "required value is missing"
            if first["type"] == "missing"
            else f"value rejected by ReferralFacts ({first['type']})"
        )
        return MappingError(
            reason,
            mapping=self.name,
            rule=rule.target if rule else field,
            source_path=rule.source if rule else None,
            field=field,
            record=record_id,
        )
