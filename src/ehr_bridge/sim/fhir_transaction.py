"""Transaction Bundles for the simulator: all entries commit together or none does.

Supported entries: ``POST Type`` (create; with ``ifNoneExist`` a conditional create that
answers ``200 OK`` with the existing resource when exactly one matches, and ``412`` when
several do) and ``PUT Type/id`` (update-as-create) or ``PUT Type?query`` (conditional
update). References to another entry's ``fullUrl`` (``urn:uuid:...``) are rewritten to the
id the server assigned. Every resource is parsed before anything is stored, so a bad
entry leaves the server unchanged and the answer names ``Bundle.entry[i].resource...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from ehr_bridge.sim.fhir_rules import checked_write
from ehr_bridge.sim.fhir_search import parse_query
from ehr_bridge.sim.fhir_store import (
    FHIR_ID,
    FHIR_TYPE,
    FhirSimError,
    FhirStore,
    JsonDict,
)


@dataclass
class _Plan:
    """What one entry will do once every entry has been checked."""

    index: int
    full_url: str | None
    kind: str
    resource_id: str
    resource: JsonDict | None  # None: a conditional create matched an existing resource
    existing: JsonDict | None = None


def find_matches(store: FhirStore, kind: str, query_text: str) -> list[JsonDict]:
    """Every resource of ``kind`` matching a search query string (the caller holds the lock)."""
    params = parse_qs(query_text, keep_blank_values=True)
    query = parse_query(kind, params)
    return [r for r in store.candidates(kind) if all(m(r) for m in query.matchers)]


def run_transaction(store: FhirStore, bundle: object) -> JsonDict:
    """Apply a ``transaction`` Bundle atomically and answer a ``transaction-response``."""
    entries = _entries(bundle)
    with store.locked():
        plans = [_plan(store, index, entry) for index, entry in enumerate(entries)]
        targets = {p.full_url: f"{p.kind}/{p.resource_id}" for p in plans if p.full_url}
        for plan in plans:
            if plan.resource is not None:
                plan.resource = rewrite_references(plan.resource, targets)
                checked_write(plan.resource, f"Bundle.entry[{plan.index}].resource")
        answers = [_commit(store, plan) for plan in plans]
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": answers}


def _entries(bundle: object) -> list[JsonDict]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirSimError(400, "structure", "body is not a Bundle")
    if bundle.get("type") != "transaction":
        raise FhirSimError(400, "not-supported", "only transaction Bundles are accepted here")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise FhirSimError(400, "structure", "entry must be a list of objects", "Bundle.entry")
    return entries


def _plan(store: FhirStore, index: int, entry: JsonDict) -> _Plan:
    where = f"Bundle.entry[{index}]"
    request, resource = entry.get("request"), entry.get("resource")
    if not isinstance(request, dict) or not isinstance(resource, dict):
        raise FhirSimError(400, "structure", "entry needs request and resource", where)
    method, url = request.get("method"), str(request.get("url", ""))
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or not FHIR_TYPE.fullmatch(kind):
        raise FhirSimError(400, "structure", "resourceType missing", f"{where}.resource")
    full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
    if method == "POST":
        return _plan_create(store, index, full_url, url, kind, resource, request)
    if method == "PUT":
        return _plan_update(store, index, full_url, url, kind, resource)
    raise FhirSimError(400, "not-supported", "only POST and PUT entries", f"{where}.request")


def _plan_create(
    store: FhirStore,
    index: int,
    full_url: str | None,
    url: str,
    kind: str,
    resource: JsonDict,
    request: JsonDict,
) -> _Plan:
    if url != kind:
        raise FhirSimError(400, "invalid", "POST url must be the resource type", _at(index))
    condition = request.get("ifNoneExist")
    if isinstance(condition, str) and condition:
        found = find_matches(store, kind, condition)
        if len(found) > 1:
            raise FhirSimError(412, "duplicate", "ifNoneExist matches several", _at(index))
        if found:
            existing = found[0]
            return _Plan(index, full_url, kind, existing["id"], None, existing)
    new_id = store.new_id()
    return _Plan(index, full_url, kind, new_id, {**resource, "id": new_id})


def _plan_update(
    store: FhirStore, index: int, full_url: str | None, url: str, kind: str, resource: JsonDict
) -> _Plan:
    path, _, condition = url.partition("?")
    if condition:
        if path != kind:
            raise FhirSimError(400, "invalid", "PUT url type differs from resource", _at(index))
        found = find_matches(store, kind, condition)
        if len(found) > 1:
            raise FhirSimError(412, "duplicate", "conditional update matches several", _at(index))
        own = resource.get("id")
        target = found[0]["id"] if found else (own if isinstance(own, str) else store.new_id())
        return _Plan(index, full_url, kind, target, {**resource, "id": target})
    url_kind, _, resource_id = path.partition("/")
    if url_kind != kind or not FHIR_ID.fullmatch(resource_id):
        raise FhirSimError(400, "invalid", "PUT url must be Type/id of the resource", _at(index))
    if resource.get("id", resource_id) != resource_id:
        raise FhirSimError(400, "invalid", "resource id differs from the PUT url", _at(index))
    return _Plan(index, full_url, kind, resource_id, {**resource, "id": resource_id})


def _at(index: int) -> str:
    return f"Bundle.entry[{index}].request"


def _commit(store: FhirStore, plan: _Plan) -> JsonDict:
    if plan.resource is None:
        existing = plan.existing or {}
        version = existing.get("meta", {}).get("versionId", "1")
        location = f"{plan.kind}/{plan.resource_id}/_history/{version}"
        return {"response": {"status": "200 OK", "location": location, "etag": f'W/"{version}"'}}
    written = store.put(plan.resource)
    meta = written.resource["meta"]
    return {
        "fullUrl": f"{plan.kind}/{plan.resource_id}",
        "response": {
            "status": "201 Created" if written.created else "200 OK",
            "location": written.location,
            "etag": f'W/"{meta["versionId"]}"',
            "lastModified": meta["lastUpdated"],
        },
    }


def rewrite_references(value: Any, targets: dict[str, str]) -> Any:
    """``value`` with every ``{"reference": <fullUrl of an entry>}`` pointed at ``Type/id``."""
    if isinstance(value, list):
        return [rewrite_references(v, targets) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: rewrite_references(v, targets) for k, v in value.items()}
    reference = out.get("reference")
    if isinstance(reference, str) and reference in targets:
        out["reference"] = targets[reference]
    return out
