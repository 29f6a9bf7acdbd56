"""The mapping file's schema, as a pydantic model that also exports JSON Schema for editors.

A mapping file is data an integrator writes by hand, so the model forbids unknown keys
everywhere (a typo fails at start-up instead of silently mapping nothing) and states every
field's purpose in its description, which editors show from ``mappings/mapping.schema.json``.
Semantic checks that need the registry or the target models (transform names, code-map
names, JMESPath syntax, target fields) live in ``loader``; this module checks only shape.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from ehr_bridge.mapping.api import ApiSpec
from ehr_bridge.mapping.transforms import TRANSFORMS

CURRENT_SPEC_VERSION = 1

#: the write-back kinds an outbound section may define (``WriteItem.kind``)
OUTBOUND_KINDS: frozenset[str] = frozenset(
    {"care_contact", "clinical_note", "assessment", "referral_status", "risk_alert"}
)

#: kinds a mapping may leave out even for an adapter that takes them: the connection then
#: never queues them (``Connection.writes``), and the engine escalates a risk another way
OPTIONAL_KINDS: frozenset[str] = frozenset({"risk_alert"})
#: the codes a risk_alert's context carries (``context.level``, ``.priority``, ``.reason``)
RISK_LEVELS = ("routine_review", "urgent", "immediate")
RISK_PRIORITIES = ("routine", "urgent", "stat")
RISK_REASONS = ("phq9_item9", "provider_flag", "risk_assessment", "detected_issue")

_PLAIN = sorted(n for n, t in TRANSFORMS.items() if not t.params)
_PARAMETERISED = sorted(n for n, t in TRANSFORMS.items() if t.params)

TransformName = Annotated[str, WithJsonSchema({"type": "string", "enum": _PLAIN})]
TransformCall = Annotated[
    dict[str, dict[str, Any]],
    WithJsonSchema(
        {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "propertyNames": {"enum": _PARAMETERISED},
            "additionalProperties": {"type": "object"},
        }
    ),
]
TransformStep = TransformName | TransformCall


def _check_json_value(value: Any) -> Any:
    """Refuse YAML values that are not JSON (an unquoted date becomes a Python date)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("object keys must be text")
            _check_json_value(item)
    elif isinstance(value, list):
        for item in value:
            _check_json_value(item)
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise ValueError("must be a JSON value; quote dates and times in YAML")
    return value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleSpec(_Spec):
    """How one target field gets its value: source, then transforms, code map, default."""

    path: str | None = Field(
        default=None, description="JMESPath expression evaluated on the source document"
    )
    const: Any = Field(default=None, description="A fixed value instead of a path")
    transform: TransformStep | list[TransformStep] | None = Field(
        default=None,
        description="Transform name, {name: {args}}, or a list of them, applied in order",
    )
    code_map: str | None = Field(
        default=None, description="Name of a code map (under code_maps) applied after transforms"
    )
    on_unmapped: Annotated[
        Literal["error", "null", "keep"],
        WithJsonSchema({"enum": ["error", "null", "keep", None]}),  # YAML null means "null"
    ] = Field(
        default="error",
        description="A code missing from the code map: error (quarantine), null, or keep as is",
    )
    required: bool = Field(default=False, description="A null result is a MappingError")
    default: Any = Field(default=None, description="Value used when the result is null")

    @field_validator("on_unmapped", mode="before")
    @classmethod
    def _yaml_null(cls, value: Any) -> Any:
        """YAML reads ``on_unmapped: null`` as None; it means the option "null"."""
        return "null" if value is None else value

    @field_validator("const", "default")
    @classmethod
    def _json_only(cls, value: Any) -> Any:
        """Payloads and facts are JSON, so fixed values must be JSON too."""
        return _check_json_value(value)

    @field_validator("transform")
    @classmethod
    def _one_name_per_call(cls, value: Any) -> Any:
        """A ``{name: args}`` step with two names is ambiguous about the order."""
        for step in value if isinstance(value, list) else [value]:
            if isinstance(step, dict) and len(step) != 1:
                raise ValueError("a parameterised transform is written {name: {args}}, one name")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        """A rule reads a path or states a constant; both or neither is a mistake."""
        if ("const" in self.model_fields_set) == (self.path is not None):
            raise ValueError("give exactly one of path or const")
        if self.required and self.default is not None:
            raise ValueError("required and default contradict each other; drop one")
        return self

    def steps(self) -> list[tuple[str, dict[str, Any]]]:
        """The transform steps as (name, args) pairs, in order."""
        raw = self.transform if isinstance(self.transform, list) else [self.transform]
        out: list[tuple[str, dict[str, Any]]] = []
        for step in raw:
            if isinstance(step, str):
                out.append((step, {}))
            elif isinstance(step, dict):
                out.extend(step.items())
        return out


Rules = dict[str, RuleSpec]


class RecordSpec(_Spec):
    """Where the engine finds a source record's identity and change marker."""

    id: str = Field(description="JMESPath to the trust's referral id (ledger and quarantine)")
    updated_at: str | None = Field(
        default=None, description="JMESPath to the change timestamp used as the pull cursor"
    )
    version: str | None = Field(default=None, description="JMESPath to the record version")


class InboundSpec(_Spec):
    """Rules from a trust record to canonical facts; keys are ReferralFacts fields."""

    referral: Rules = Field(description="Target field (patient.* for PatientFacts fields) -> rule")


class OutboundSpec(_Spec):
    """Rules from {resource, context} to a trust write payload, one section per kind."""

    care_contact: Rules | None = Field(default=None, description="From a FHIR Encounter")
    clinical_note: Rules | None = Field(default=None, description="From a DocumentReference")
    assessment: Rules | None = Field(default=None, description="From a total-score Observation")
    referral_status: Rules | None = Field(
        default=None, description="From context only: status, date, end_code"
    )
    risk_alert: Rules | None = Field(
        default=None,
        description="From a safety Flag (a risk event) and its context: level, priority, "
        "reason, raised_at, summary",
    )


class MappingSpec(_Spec):
    """A whole mapping file (``spec_version: 1``)."""

    spec_version: Literal[1] = Field(description="Mapping language version; this release reads 1")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="Short name, used in errors")
    description: str = ""
    record: RecordSpec
    code_maps: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Named code lists: source code -> target code"
    )
    inbound: InboundSpec
    outbound: OutboundSpec = Field(default_factory=OutboundSpec)
    api: ApiSpec | None = Field(
        default=None, description="How the generic rest adapter calls this system (optional)"
    )

    @field_validator("code_maps", mode="before")
    @classmethod
    def _quoted_codes(cls, value: Any) -> Any:
        """YAML reads an unquoted 05 as the number 5, losing the padding codes depend on."""
        if not isinstance(value, dict):
            return value
        for table in value.values():
            if isinstance(table, dict) and not all(
                isinstance(k, str) and isinstance(v, str) for k, v in table.items()
            ):
                raise ValueError('code map keys and values must be quoted text, e.g. "05": "5"')
        return value


def export_json_schema() -> str:
    """The JSON Schema text committed as ``mappings/mapping.schema.json`` (for editors)."""
    schema = MappingSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ehr-bridge mapping file"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
