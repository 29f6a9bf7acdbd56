"""The FHIR server simulator's interactions, as plain functions of (store, request).

Kept apart from the HTTP plumbing (``fhir_server``) so each interaction can be read and
tested on its own. Paths are relative to the FHIR base (``/fhir``):

====================  ======  ==============================================
path                  method  interaction
====================  ======  ==============================================
(base)                POST    transaction Bundle (``fhir_transaction``)
``$process-message``  POST    BaRS-style message Bundle (``fhir_message``)
``metadata``          GET     a small CapabilityStatement
``Type``              GET     search (``fhir_search``)
``Type``              POST    create; ``If-None-Exist`` makes it conditional
``Type/id``           GET     read
``Type/id``           PUT     update, or create with the client's id
====================  ======  ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ehr_bridge.sim.fhir_message import process_message
from ehr_bridge.sim.fhir_rules import checked_write
from ehr_bridge.sim.fhir_search import parse_query, search
from ehr_bridge.sim.fhir_store import (
    FHIR_ID,
    FHIR_TYPE,
    FhirSimError,
    FhirStore,
    JsonDict,
    Written,
)
from ehr_bridge.sim.fhir_transaction import find_matches, run_transaction

BASE_PATH = "/fhir"


@dataclass(frozen=True)
class FhirRequest:
    """What an interaction needs: the path below the base, query, body and two headers."""

    method: str
    parts: list[str]
    query: dict[str, list[str]] = field(default_factory=dict)
    body: Any = None
    if_none_exist: str | None = None


@dataclass(frozen=True)
class FhirResponse:
    """A FHIR JSON answer."""

    status: int
    body: JsonDict
    headers: dict[str, str] = field(default_factory=dict)


def template(parts: list[str]) -> str:
    """The path with ids replaced, for logs and fault rules (``/fhir/Patient/{id}``)."""
    if len(parts) == 2:
        return f"{BASE_PATH}/{parts[0]}/{{id}}"
    return "/".join([BASE_PATH, *parts[:1]])


def outcome(status: int, code: str, message: str, expression: str | None = None) -> FhirResponse:
    """An OperationOutcome answer."""
    issue: JsonDict = {"severity": "error", "code": code, "diagnostics": message}
    if expression:
        issue["expression"] = [expression]
    return FhirResponse(status, {"resourceType": "OperationOutcome", "issue": [issue]})


def handle(store: FhirStore, base_url: str, request: FhirRequest) -> FhirResponse:
    """Run one interaction; refusals become OperationOutcome answers."""
    try:
        return _dispatch(store, base_url, request)
    except FhirSimError as exc:
        return outcome(exc.status, exc.code, exc.message, exc.expression)


def _dispatch(store: FhirStore, base_url: str, request: FhirRequest) -> FhirResponse:
    parts, method = request.parts, request.method
    if not parts and method == "POST":
        return FhirResponse(200, run_transaction(store, request.body))
    if parts == ["$process-message"] and method == "POST":
        return FhirResponse(200, process_message(store, request.body))
    if parts == ["metadata"] and method == "GET":
        return FhirResponse(200, capability_statement())
    if len(parts) == 1 and FHIR_TYPE.fullmatch(parts[0]):
        if method == "GET":
            return FhirResponse(200, search(store, parse_query(parts[0], request.query), base_url))
        if method == "POST":
            return _create(store, parts[0], request)
    if len(parts) == 2 and FHIR_TYPE.fullmatch(parts[0]) and FHIR_ID.fullmatch(parts[1]):
        if method == "GET":
            return _read(store, parts[0], parts[1])
        if method == "PUT":
            return _update(store, parts[0], parts[1], request.body)
    if _known_path(parts):
        return outcome(405, "not-supported", "interaction not supported on this path")
    return outcome(404, "not-found", "no such path")


def _known_path(parts: list[str]) -> bool:
    if len(parts) == 0 or parts in (["$process-message"], ["metadata"]):
        return True
    if len(parts) == 1:
        return FHIR_TYPE.fullmatch(parts[0]) is not None
    return len(parts) == 2 and bool(FHIR_TYPE.fullmatch(parts[0]) and FHIR_ID.fullmatch(parts[1]))


def _read(store: FhirStore, kind: str, resource_id: str) -> FhirResponse:
    found = store.read(kind, resource_id)
    if found is None:
        return outcome(404, "not-found", f"no {kind} with this id")
    version = found["meta"]["versionId"]
    return FhirResponse(200, found, {"ETag": f'W/"{version}"'})


def _create(store: FhirStore, kind: str, request: FhirRequest) -> FhirResponse:
    resource = checked_write(request.body, kind)
    if resource.get("resourceType") != kind:
        raise FhirSimError(400, "invalid", "resourceType differs from the URL", kind)
    with store.locked():
        if request.if_none_exist:
            found = find_matches(store, kind, request.if_none_exist)
            if len(found) > 1:
                raise FhirSimError(412, "duplicate", "If-None-Exist matches several")
            if found:
                return FhirResponse(200, found[0], _written_headers(found[0]))
        written = store.create(resource)
    return FhirResponse(201, written.resource, _written_headers(written.resource))


def _update(store: FhirStore, kind: str, resource_id: str, body: object) -> FhirResponse:
    resource = checked_write(body, kind)
    if resource.get("resourceType") != kind or resource.get("id", resource_id) != resource_id:
        raise FhirSimError(400, "invalid", "resourceType or id differs from the URL", kind)
    written: Written = store.put({**resource, "id": resource_id})
    return FhirResponse(
        201 if written.created else 200, written.resource, _written_headers(written.resource)
    )


def _written_headers(resource: JsonDict) -> dict[str, str]:
    meta = resource["meta"]
    location = f"{resource['resourceType']}/{resource['id']}/_history/{meta['versionId']}"
    return {"Location": location, "ETag": f'W/"{meta["versionId"]}"'}


def capability_statement() -> JsonDict:
    """Just enough CapabilityStatement for a client to see what is supported."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-26",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "interaction": [{"code": "transaction"}],
                "operation": [
                    {
                        "name": "process-message",
                        "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
                    }
                ],
            }
        ],
    }
