"""The FHIR server simulator's interactions, as plain functions of (store, request).

Kept apart from the front door (``fhir_server``) so each interaction can be read and
tested on its own; ``ROUTES`` puts them on the HTTP base (``sim.http_base``). Paths are
relative to the FHIR base (``/fhir``):

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

from ehr_bridge.sim.fhir_message import process_message
from ehr_bridge.sim.fhir_rules import checked_write
from ehr_bridge.sim.fhir_search import parse_query, search
from ehr_bridge.sim.fhir_store import FHIR_ID, FHIR_TYPE, FhirSimError, FhirStore, JsonDict
from ehr_bridge.sim.fhir_transaction import find_matches, run_transaction
from ehr_bridge.sim.http_base import HEALTH, Request, Response, Route

BASE_PATH = "/fhir"


def outcome(status: int, code: str, message: str, expression: str | None = None) -> Response:
    """An OperationOutcome answer."""
    issue: JsonDict = {"severity": "error", "code": code, "diagnostics": message}
    if expression:
        issue["expression"] = [expression]
    return Response(status, {"resourceType": "OperationOutcome", "issue": [issue]})


def _transaction(store: FhirStore, request: Request) -> Response:
    return Response(200, run_transaction(store, request.body))


def _message(store: FhirStore, request: Request) -> Response:
    return Response(200, process_message(store, request.body))


def _metadata(store: FhirStore, request: Request) -> Response:
    return Response(200, capability_statement())


def _search(store: FhirStore, request: Request) -> Response:
    query = parse_query(request.params["type"], request.query)
    return Response(200, search(store, query, request.server_url + BASE_PATH))


def _read(store: FhirStore, request: Request) -> Response:
    kind = request.params["type"]
    found = store.read(kind, request.params["id"])
    if found is None:
        return outcome(404, "not-found", f"no {kind} with this id")
    version = found["meta"]["versionId"]
    return Response(200, found, {"ETag": f'W/"{version}"'})


def _create(store: FhirStore, request: Request) -> Response:
    kind, condition = request.params["type"], request.headers.get("If-None-Exist")
    resource = checked_write(request.body, kind)
    if resource.get("resourceType") != kind:
        raise FhirSimError(400, "invalid", "resourceType differs from the URL", kind)
    with store.locked():
        if condition:
            found = find_matches(store, kind, condition)
            if len(found) > 1:
                raise FhirSimError(412, "duplicate", "If-None-Exist matches several")
            if found:
                return Response(200, found[0], _written_headers(found[0]))
        written = store.create(resource)
    return Response(201, written.resource, _written_headers(written.resource))


def _update(store: FhirStore, request: Request) -> Response:
    kind, resource_id = request.params["type"], request.params["id"]
    resource = checked_write(request.body, kind)
    if resource.get("resourceType") != kind or resource.get("id", resource_id) != resource_id:
        raise FhirSimError(400, "invalid", "resourceType or id differs from the URL", kind)
    written = store.put({**resource, "id": resource_id})
    return Response(
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


_TYPE = {"type": FHIR_TYPE.pattern}
#: the interactions; logs and fault rules see the resource type, never the id
ROUTES: tuple[Route, ...] = (
    Route(BASE_PATH, {"POST": _transaction}),
    Route(f"{BASE_PATH}/$process-message", {"POST": _message}),
    Route(f"{BASE_PATH}/metadata", {"GET": _metadata}),
    Route(f"{BASE_PATH}/{{type}}", {"GET": _search, "POST": _create}, where=_TYPE, shown=("type",)),
    Route(
        f"{BASE_PATH}/{{type}}/{{id}}",
        {"GET": _read, "PUT": _update},
        where={**_TYPE, "id": FHIR_ID.pattern},
        shown=("type",),
    ),
    HEALTH,
)
