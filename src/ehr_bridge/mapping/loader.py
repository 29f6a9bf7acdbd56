"""Loading a mapping file: read YAML, validate the schema, compile every rule once.

Mappings are checked completely at start-up (architecture rule "fail at start-up, not
mid-run"): YAML syntax, ``spec_version``, schema shape, JMESPath syntax, transform names and
arguments, code-map names, target fields and required targets. Each problem is a
``ConfigError`` whose key names the file and the rule (``iaptus.yaml:inbound.referral.x``),
with "did you mean" where a close name exists. JMESPath expressions are compiled into
closures here (``expressions.compile_expression``), so records never pay for parsing or
walking an expression tree.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jmespath.exceptions
import yaml
from pydantic import ValidationError

from ehr_bridge.config import explain_validation
from ehr_bridge.domain.facts import PatientFacts, ReferralFacts
from ehr_bridge.errors import ConfigError
from ehr_bridge.mapping.api import Api, compile_api
from ehr_bridge.mapping.apply import REFERENCE_PATH, CompiledRule, Mapping
from ehr_bridge.mapping.expressions import (
    JMESPATH_FUNCTIONS,
    compile_expression,
    unknown_functions,
)
from ehr_bridge.mapping.schema import CURRENT_SPEC_VERSION, OUTBOUND_KINDS, MappingSpec, RuleSpec
from ehr_bridge.mapping.transforms import TRANSFORMS, BoundTransform, TransformArgsError, bind

_TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _fields(model: type[ReferralFacts] | type[PatientFacts], prefix: str = "") -> dict[str, bool]:
    """Target name -> required, for a facts model's scalar fields."""
    return {
        f"{prefix}{name}": info.is_required()
        for name, info in model.model_fields.items()
        if name != "patient"
    }


#: inbound target field -> whether ReferralFacts requires it
INBOUND_TARGETS: dict[str, bool] = {**_fields(ReferralFacts), **_fields(PatientFacts, "patient.")}


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read mapping file ({exc.strerror})", key=str(path)) from exc
    except RecursionError:  # a hostile or broken file nested thousands deep
        raise ConfigError("YAML nested too deeply", key=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}", key=str(path)) from exc
    if not isinstance(raw, dict):
        raise ConfigError("a mapping file is a YAML object", key=str(path))
    return raw


def _validate(raw: dict[str, Any], path: Path) -> MappingSpec:
    version = raw.get("spec_version")
    if version != CURRENT_SPEC_VERSION:
        raise ConfigError(
            f"unsupported spec_version {version!r}; this release reads {CURRENT_SPEC_VERSION}",
            key=f"{path}:spec_version",
        )
    try:
        return MappingSpec.model_validate(raw)
    except ValidationError as exc:
        where, message = explain_validation(exc, MappingSpec)
        raise ConfigError(message, key=f"{path}:{where}") from None


class _Compiler:
    """Turns a validated spec into compiled rules, naming the file and rule on any problem."""

    def __init__(self, spec: MappingSpec, path: Path) -> None:
        self.spec = spec
        self.path = path

    def mapping(self) -> Mapping:
        sections = {
            k: getattr(self.spec.outbound, k) for k in type(self.spec.outbound).model_fields
        }
        outbound = {k: self._outbound(k, r) for k, r in sections.items() if r is not None}
        return Mapping(
            name=self.spec.name,
            path=self.path,
            spec_version=self.spec.spec_version,
            record=self._record(),
            inbound=self._inbound(),
            outbound=outbound,
            api=self._api(frozenset(outbound)),
            code_maps=self.spec.code_maps,
        )

    def _api(self, kinds: frozenset[str]) -> Api | None:
        if self.spec.api is None:
            return None
        api = compile_api(self.spec.api, self._key("api"))
        for kind in OUTBOUND_KINDS - kinds:
            if api.write(kind) is not None:
                raise ConfigError(
                    f"a write endpoint for {kind} but no outbound.{kind} rules to fill it",
                    key=self._key(f"api.writes.{kind}"),
                )
        return api

    def _key(self, rule: str) -> str:
        return f"{self.path}:{rule}"

    def _expression(self, text: str, rule: str) -> Any:
        try:
            compiled = compile_expression(text)
        except jmespath.exceptions.JMESPathError:
            raise ConfigError(
                f"invalid JMESPath expression {text!r}", key=self._key(rule)
            ) from None
        except RecursionError:  # a 3,000-deep expression: refused, never a traceback
            raise ConfigError(
                "JMESPath expression nested too deeply", key=self._key(rule)
            ) from None
        unknown = unknown_functions(compiled.parsed)
        if unknown:  # jmespath itself finds these only at search time: on every record
            names = sorted(unknown)
            hint = _did_you_mean(names[0], JMESPATH_FUNCTIONS)
            raise ConfigError(
                f"unknown JMESPath function {', '.join(names)}{hint}", key=self._key(rule)
            )
        return compiled

    def _record(self) -> dict[str, Any]:
        found = self.spec.record.model_dump(exclude_none=True).items()
        return {name: self._expression(text, f"record.{name}") for name, text in found}

    def _inbound(self) -> tuple[CompiledRule, ...]:
        rules = self.spec.inbound.referral
        section = "inbound.referral"
        for target in rules:
            if target not in INBOUND_TARGETS:
                hint = _did_you_mean(target, INBOUND_TARGETS)
                raise ConfigError(
                    f"unknown target field {target!r}{hint}", key=self._key(f"{section}.{target}")
                )
        missing = [t for t, required in INBOUND_TARGETS.items() if required and t not in rules]
        if missing:
            raise ConfigError(
                f"no rule for required target(s) {', '.join(missing)}", key=self._key(section)
            )
        return tuple(self._rule(t, spec, f"{section}.{t}") for t, spec in rules.items())

    def _outbound(self, kind: str, rules: dict[str, RuleSpec]) -> tuple[CompiledRule, ...]:
        section = f"outbound.{kind}"
        if not any(rule.path == REFERENCE_PATH for rule in rules.values()):
            raise ConfigError(
                f"every outbound kind must put our idempotency key into the payload: a rule "
                f"with path {REFERENCE_PATH} (e.g. client_reference: "
                f"{{path: {REFERENCE_PATH}, required: true}})",
                key=self._key(section),
            )
        for target in rules:
            if not _TARGET.fullmatch(target) or any(
                other.startswith(f"{target}.") for other in rules
            ):
                raise ConfigError(
                    "target must be a dotted name, not also a parent of another target",
                    key=self._key(f"{section}.{target}"),
                )
        return tuple(self._rule(t, spec, f"{section}.{t}") for t, spec in rules.items())

    def _rule(self, target: str, spec: RuleSpec, rule: str) -> CompiledRule:
        return CompiledRule(
            target=target,
            source=spec.path if spec.path is not None else "const",
            expression=None if spec.path is None else self._expression(spec.path, rule),
            const=spec.const,
            steps=tuple(self._step(name, args, rule) for name, args in spec.steps()),
            code_map_name=spec.code_map,
            code_map=self._code_map(spec.code_map, rule),
            on_unmapped=spec.on_unmapped,
            required=spec.required,
            default=spec.default,
        )

    def _step(self, name: str, args: dict[str, Any], rule: str) -> BoundTransform:
        if name not in TRANSFORMS:
            hint = _did_you_mean(name, TRANSFORMS)
            raise ConfigError(f"unknown transform {name!r}{hint}", key=self._key(rule))
        try:
            return bind(name, args)
        except TransformArgsError as exc:
            raise ConfigError(f"transform {name}: {exc}", key=self._key(rule)) from None

    def _code_map(self, name: str | None, rule: str) -> dict[str, str] | None:
        if name is None:
            return None
        if name not in self.spec.code_maps:
            hint = _did_you_mean(name, self.spec.code_maps)
            raise ConfigError(f"unknown code map {name!r}{hint}", key=self._key(rule))
        return dict(self.spec.code_maps[name])


def load_mapping(path: Path) -> Mapping:
    """Parse, validate and compile a mapping file, so later records can only fail as records.

    Raises:
        ConfigError: any problem with the file; ``key`` names the file and the rule.
    """
    spec = _validate(_read_yaml(path), path)
    return _Compiler(spec, path).mapping()
