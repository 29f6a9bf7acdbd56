"""Validate resources against the official FHIR R4 (4.0) JSON schema.

The schema is 3 MB, so it is loaded once per test session and registered once; a
validator per resource type checks against that type's definition directly (the
schema's top-level ``oneOf`` over 145 types is correct but slow and its errors are
unreadable). Errors inside nested ``oneOf`` (Bundle entries) are unwrapped with
``best_match`` so the failure names the deepest offending path.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT6

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "fhir.schema.json"
_SCHEMA_URI = "urn:ehr-bridge:fhir-r4-schema"


@cache
def _registry() -> tuple[Registry, frozenset[str]]:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    resource = Resource.from_contents(schema, default_specification=DRAFT6)
    registry: Registry = Registry().with_resource(_SCHEMA_URI, resource)
    return registry, frozenset(schema["definitions"])


@cache
def _validator(resource_type: str) -> jsonschema.Draft6Validator:
    registry, definitions = _registry()
    if resource_type not in definitions:
        raise AssertionError(f"not an R4 resource type: {resource_type!r}")
    root = {"$ref": f"{_SCHEMA_URI}#/definitions/{resource_type}"}
    return jsonschema.Draft6Validator(root, registry=registry)


def _describe(error: ValidationError) -> str:
    deepest = best_match([error]) if error.context else error
    message = deepest.message if len(deepest.message) < 200 else deepest.message[:200] + "..."
    return f"{deepest.json_path}: {message}"


def r4_errors(resource: dict[str, Any]) -> list[str]:
    """Every schema violation in ``resource``, as "path: message" lines (empty if valid).

    A Bundle's entries are also checked one by one against their own type, so a bad entry
    is reported by its own path instead of as one opaque ``oneOf`` failure.
    """
    validator = _validator(str(resource.get("resourceType")))
    errors = sorted(_describe(error) for error in validator.iter_errors(resource))
    if resource.get("resourceType") != "Bundle":
        return errors
    for index, entry in enumerate(resource.get("entry") or []):
        inner = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(inner, dict) and inner.get("resourceType") in _registry()[1]:
            prefix = f"$.entry[{index}].resource"
            found = [prefix + line[1:] for line in r4_errors(inner)]
            if found:
                errors = [line for line in errors if not line.startswith(prefix + ":")] + found
    return errors


def assert_valid_r4(resource: dict[str, Any]) -> None:
    """Fail the test unless ``resource`` is valid FHIR R4 JSON per the official schema."""
    errors = r4_errors(resource)
    assert not errors, "not valid FHIR R4:\n" + "\n".join(errors[:20])
