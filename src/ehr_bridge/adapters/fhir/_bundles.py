"""Reading searchsets and building the Bundles the FHIR adapters send.

Plain functions over JSON: what a searchset's entries are (``match`` vs ``include``), its
``next`` link, what a transaction answered, and the transaction and BaRS-style message
Bundles we post. Ids that will become part of a URL are checked against FHIR's ``id``
rule first, so no id can change the request path.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any
from urllib.parse import urlencode

from ehr_bridge.adapters.base import JsonDict
from ehr_bridge.errors import TerminalError, TransientError

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
FHIR_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
BARS_EVENTS = "https://fhir.nhs.uk/CodeSystem/message-events-bars"
BARS_REASONS = "https://fhir.nhs.uk/CodeSystem/message-reason-bars"
BARS_DEFINITION = "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request"
_MESSAGES = uuid.uuid5(uuid.NAMESPACE_URL, "https://fhir.ehr-bridge.dev/messages")


def as_object(value: object) -> JsonDict:
    """``value`` if it is a JSON object, else an empty one (untrusted shapes read safely)."""
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    """``value`` if it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


def entries(bundle: JsonDict, mode: str) -> list[JsonDict]:
    """The resources of a searchset's entries in ``mode`` (an entry without mode is a match)."""
    out: list[JsonDict] = []
    for entry in as_list(bundle.get("entry")):
        resource = as_object(entry).get("resource")
        search = as_object(as_object(entry).get("search"))
        if isinstance(resource, dict) and search.get("mode", "match") == mode:
            out.append(resource)
    return out


def next_link(bundle: JsonDict) -> str | None:
    """The URL of the ``next`` page, if the server says there is one."""
    for link in as_list(bundle.get("link")):
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def relative_reference(reference: object, kind: str) -> str | None:
    """``Kind/id`` from ``Kind/id`` or ``<base>/Kind/id``; None for anything else."""
    if not isinstance(reference, str):
        return None
    parts = reference.split("/")
    if len(parts) >= 2 and parts[-2] == kind and FHIR_ID.fullmatch(parts[-1]):
        return f"{kind}/{parts[-1]}"
    return None


def checked_id(value: object, what: str) -> str:
    """``value`` if it is a FHIR id (safe in a URL path), else a TerminalError naming ``what``."""
    if isinstance(value, str) and FHIR_ID.fullmatch(value):
        return value
    raise TerminalError(f"{what} is not a FHIR id (letters, digits, '-', '.')", code="unsafe_id")


def conditional_create(resource: JsonDict, identifier_system: str, reference: str) -> JsonDict:
    """A transaction with one ``POST`` entry that only creates if our identifier is new."""
    condition = urlencode({"identifier": f"{identifier_system}|{reference}"})
    full_url = f"urn:uuid:{uuid.uuid5(_MESSAGES, reference)}"
    entry = {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], "ifNoneExist": condition},
    }
    return {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}


def conditional_creates(
    resources: list[JsonDict], identifier_system: str, reference: str
) -> JsonDict:
    """A transaction of several conditional creates that share our client reference.

    Each resource type gets its own ``fullUrl`` (from the reference and the type), so one
    entry can point at another (``Task.focus`` at the Flag) before the server assigns ids;
    a conditional create that matches keeps that pointer on the resource already there.
    """
    condition = urlencode({"identifier": f"{identifier_system}|{reference}"})
    items = [
        {
            "fullUrl": entry_url(reference, r["resourceType"]),
            "resource": r,
            "request": {"method": "POST", "url": r["resourceType"], "ifNoneExist": condition},
        }
        for r in resources
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": items}


def entry_url(reference: str, kind: str) -> str:
    """The ``urn:uuid`` of our ``kind`` entry for a client reference in a multi-entry write."""
    return f"urn:uuid:{uuid.uuid5(_MESSAGES, f'{reference}|{kind}')}"


def put_transaction(resources: list[JsonDict], base_url: str) -> JsonDict:
    """A transaction that PUTs each resource under its own id (update, or create with our id)."""
    items = [
        {
            "fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
        }
        for r in resources
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": items}


def first_response(answer: JsonDict) -> tuple[str, str]:
    """(status, ``Type/id``) of a transaction-response's first entry.

    Raises:
        TransientError: (ambiguous) the answer does not say what happened; the write may
            have landed, so the next attempt looks for it before writing again.
        TerminalError: (``trust_id_shape``) the location names no ``Type/id``: the server
            said something else there, which is neither kept nor repeated.
    """
    return responses(answer, 1)[0]


def responses(answer: JsonDict, expected: int) -> list[tuple[str, str]]:
    """(status, ``Type/id``) of each of a transaction-response's ``expected`` entries.

    Raises:
        TransientError: (ambiguous) fewer entries, or one without a usable answer.
    """
    found = answer.get("entry")
    items = found if isinstance(found, list) else []
    if len(items) < expected:
        raise TransientError("transaction answered without a response entry", ambiguous=True)
    return [_response(item) for item in items[:expected]]


def _response(entry: object) -> tuple[str, str]:
    response = entry.get("response") if isinstance(entry, dict) else None
    if not isinstance(response, dict):
        raise TransientError("transaction answered without a response entry", ambiguous=True)
    status, location = str(response.get("status", "")), response.get("location")
    if not location:
        raise TransientError("transaction answered without a location", ambiguous=True)
    parts = str(location).split("/_history/")[0].split("/")
    if len(parts) < 2 or not FHIR_TYPE.fullmatch(parts[-2]) or not FHIR_ID.fullmatch(parts[-1]):
        raise TerminalError(
            "the trust's id for the written item is not an id (a location [base/]Type/id):"
            " refused, not stored",
            code="trust_id_shape",
        )
    return status, f"{parts[-2]}/{parts[-1]}"


def message_bundle(
    service_request_id: str,
    resources: list[JsonDict],
    *,
    source: str,
    destination: str,
    timestamp: str,
) -> JsonDict:
    """A BaRS-style ``servicerequest-request`` message carrying the referral's resources.

    The MessageHeader id is derived from the referral and its content, so resending the
    same delivery is the same message (the receiver answers it once) while a changed
    referral is a new message.
    """
    digest = hashlib.sha256(json.dumps(resources, sort_keys=True).encode()).hexdigest()
    header_id = str(uuid.uuid5(_MESSAGES, f"{service_request_id}|{digest}"))
    urls = {(r["resourceType"], r["id"]): _full_url(r, destination) for r in resources}
    header: JsonDict = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "eventCoding": {"system": BARS_EVENTS, "code": "servicerequest-request"},
        "reason": {"coding": [{"system": BARS_REASONS, "code": "new"}]},
        "destination": [{"endpoint": destination}],
        "source": {"endpoint": source, "software": "ehr-bridge"},
        "focus": [{"reference": urls[("ServiceRequest", service_request_id)]}],
        "definition": BARS_DEFINITION,
    }
    items = [{"fullUrl": f"urn:uuid:{header_id}", "resource": header}]
    items += [{"fullUrl": urls[(r["resourceType"], r["id"])], "resource": r} for r in resources]
    bundle_id = str(uuid.uuid5(_MESSAGES, f"bundle|{header_id}"))
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": "message",
        "timestamp": timestamp,
        "entry": items,
    }


def _full_url(resource: JsonDict, base: str) -> str:
    try:
        return f"urn:uuid:{uuid.UUID(str(resource['id']))}"
    except ValueError:
        return f"{base.rstrip('/')}/{resource['resourceType']}/{resource['id']}"


def message_outcome(answer: JsonDict) -> str:
    """The ``response.code`` of a message answer's MessageHeader (``ok`` when absent)."""
    items = entries(answer, "match")
    header: dict[str, Any] = items[0] if items else {}
    response = header.get("response") if header.get("resourceType") == "MessageHeader" else None
    return str(response.get("code", "ok")) if isinstance(response, dict) else "ok"
