"""``$process-message`` for the simulator: a BaRS-style referral message Bundle.

The receiver side of the Booking and Referral Standard's pattern (see the domain brief,
section 3.2): a ``message`` Bundle whose first entry is a MessageHeader with event
``servicerequest-request`` (system ``message-events-bars``) and a ``focus`` on a
ServiceRequest carried in the same Bundle. Every other entry is stored by its id (update
as create), so resending a changed referral replaces it. A message whose MessageHeader id
was already processed gets the same answer again and changes nothing: the sender may retry
after a lost answer without creating anything twice. The synchronous answer is a
``message`` Bundle whose MessageHeader says ``response.code = ok``.
"""

from __future__ import annotations

import copy
import uuid

from ehr_bridge.sim.fhir_store import FHIR_ID, FhirSimError, FhirStore, JsonDict, checked
from ehr_bridge.sim.fhir_transaction import rewrite_references
from ehr_bridge.sim.records import format_timestamp

EVENT_SYSTEM = "https://fhir.nhs.uk/CodeSystem/message-events-bars"
REQUEST_EVENT = "servicerequest-request"
RESPONSE_EVENT = "servicerequest-response"
_ANSWER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://fhir.ehr-bridge.dev/sim/messages")


def process_message(store: FhirStore, bundle: object) -> JsonDict:
    """Store a referral message's resources once and answer with a response message."""
    header, entries = _parts(bundle)
    header_id = str(header["id"])
    with store.locked():
        known = store.message_answers.get(header_id)
        if known is not None:
            return copy.deepcopy(known)
        resources = _resources(entries, header)
        for resource in resources:
            store.put(resource)
        answer = _answer(header_id, store)
        store.message_answers[header_id] = answer
        store.messages.append(copy.deepcopy(bundle) if isinstance(bundle, dict) else {})
    return copy.deepcopy(answer)


def _parts(bundle: object) -> tuple[JsonDict, list[JsonDict]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirSimError(400, "structure", "body is not a Bundle")
    if bundle.get("type") != "message":
        raise FhirSimError(400, "invalid", "$process-message takes a message Bundle", "Bundle.type")
    entries = bundle.get("entry")
    if (
        not isinstance(entries, list)
        or not entries
        or not all(isinstance(e, dict) for e in entries)
    ):
        raise FhirSimError(400, "structure", "a message needs entries", "Bundle.entry")
    header = entries[0].get("resource")
    if not isinstance(header, dict) or header.get("resourceType") != "MessageHeader":
        raise FhirSimError(
            400, "invalid", "the first entry must be a MessageHeader", "Bundle.entry[0]"
        )
    event = header.get("eventCoding") or {}
    if event.get("system") != EVENT_SYSTEM or event.get("code") != REQUEST_EVENT:
        raise FhirSimError(
            400, "not-supported", "unsupported message event", "MessageHeader.eventCoding"
        )
    if not isinstance(header.get("id"), str) or not FHIR_ID.fullmatch(header["id"]):
        raise FhirSimError(400, "required", "MessageHeader needs an id", "MessageHeader.id")
    return header, entries


def _resources(entries: list[JsonDict], header: JsonDict) -> list[JsonDict]:
    """The message's resources, checked, with references between entries made ``Type/id``."""
    targets: dict[str, str] = {}
    found: list[JsonDict] = []
    for index, entry in enumerate(entries[1:], start=1):
        resource = entry.get("resource")
        if not isinstance(resource, dict) or not FHIR_ID.fullmatch(str(resource.get("id", ""))):
            raise FhirSimError(
                400, "required", "every resource needs an id", f"Bundle.entry[{index}]"
            )
        if isinstance(entry.get("fullUrl"), str):
            targets[entry["fullUrl"]] = f"{resource.get('resourceType')}/{resource['id']}"
        found.append(resource)
    resources = [rewrite_references(r, targets) for r in found]
    for index, resource in enumerate(resources, start=1):
        checked(resource, f"Bundle.entry[{index}].resource")
    focus = rewrite_references(header.get("focus") or [], targets)
    requests = {
        f"ServiceRequest/{r['id']}" for r in resources if r["resourceType"] == "ServiceRequest"
    }
    if not focus or not all(f.get("reference") in requests for f in focus if isinstance(f, dict)):
        raise FhirSimError(
            400, "invalid", "focus must be a ServiceRequest in the message", "MessageHeader.focus"
        )
    return resources


def _answer(header_id: str, store: FhirStore) -> JsonDict:
    answer_id = str(uuid.uuid5(_ANSWER_NAMESPACE, header_id))
    header = {
        "resourceType": "MessageHeader",
        "id": answer_id,
        "eventCoding": {"system": EVENT_SYSTEM, "code": RESPONSE_EVENT},
        "source": {"endpoint": "urn:ehr-bridge:fhir-server-simulator"},
        "response": {"identifier": header_id, "code": "ok"},
    }
    return {
        "resourceType": "Bundle",
        "id": answer_id,
        "type": "message",
        "timestamp": format_timestamp(store.tick()),
        "entry": [{"fullUrl": f"urn:uuid:{answer_id}", "resource": header}],
    }
