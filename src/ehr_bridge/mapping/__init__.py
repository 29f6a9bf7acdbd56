"""Declarative mappings between a trust record system's JSON and ehr-bridge's own model.

A mapping file (YAML, ``spec_version: 1``) says how a trust referral becomes
``ReferralFacts`` and how our FHIR session artefacts become the trust's write payloads.
Keeping this as data, with JMESPath expressions and a closed set of named transforms,
lets an integrator add a record system without writing or running Python. The language is
described in ``docs/mapping-language.md``.

Beyond the names exported here: ``mapping.api`` (the optional ``api:`` section the generic
``rest`` adapter reads) and the toolkit behind ``ehr-bridge mapping``: ``check`` (code maps
against what each side uses), ``golden`` (fixtures and coverage), ``preview`` (dry runs and
diffs) and ``fields`` (which source fields a rule reads).
"""

from ehr_bridge.mapping.apply import Mapping
from ehr_bridge.mapping.loader import load_mapping
from ehr_bridge.mapping.schema import (
    CURRENT_SPEC_VERSION,
    OUTBOUND_KINDS,
    MappingSpec,
    export_json_schema,
)
from ehr_bridge.mapping.transforms import TRANSFORMS

__all__ = [
    "CURRENT_SPEC_VERSION",
    "OUTBOUND_KINDS",
    "TRANSFORMS",
    "Mapping",
    "MappingSpec",
    "export_json_schema",
    "load_mapping",
]
