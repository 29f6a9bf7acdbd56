"""``FhirTrust``: a trust whose record system is a FHIR R4 REST server.

Referrals in: ``GET ServiceRequest?performer...&_lastUpdated=ge<cursor>&_sort=_lastUpdated
&_include=ServiceRequest:subject&_count=N``, then the server's ``next`` links. Each raw
record handed to the mapping is one ServiceRequest with its Patient::

    {"id": <ServiceRequest.id>, "updated_at": <meta.lastUpdated>,
     "service_request": {...}, "patient": {...} or null}

``id`` and ``updated_at`` are copied out so the ledger and the cursor read them the same
way as for every other adapter. A Patient the server did not include is read on its own;
one that cannot be found leaves ``patient`` null, and the mapping quarantines the record.

Write-back: the outbound mapping builds a FHIR resource (``resourceType`` and all). We add
our client reference as an ``identifier`` (``identifier_system``), fill ``subject`` (or
``for`` on a Task) from the referral's ServiceRequest when the mapping left it out, check
the resource with the FHIR model and POST a transaction Bundle whose only entry is a
conditional create (``ifNoneExist: identifier=<system>|<reference>``). A retry after a
lost answer therefore finds the first write instead of making a second one; ``find``
searches the same identifier.

A risk alert is two resources, a safety Flag and a Task for the duty team, written in one
transaction of two conditional creates (``_risk``); its trust id is the Task's, and
``acknowledgement`` reads that Task back.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from ehr_bridge.adapters.base import (
    JsonDict,
    RiskAcknowledgement,
    SourcePage,
    WriteItem,
    WriteReceipt,
)
from ehr_bridge.adapters.fhir import _risk
from ehr_bridge.adapters.fhir._bundles import (
    FHIR_TYPE,
    as_list,
    as_object,
    checked_id,
    conditional_create,
    conditional_creates,
    entries,
    first_response,
    next_link,
    relative_reference,
    responses,
)
from ehr_bridge.adapters.fhir._http import FhirHttp
from ehr_bridge.adapters.fhir._options import FhirTrustOptions
from ehr_bridge.domain.validate import validate_resource
from ehr_bridge.errors import RecordValidationError, TerminalError, TransientError

#: where each resource type we may write keeps its patient
SUBJECT_ELEMENT = {
    "Encounter": "subject",
    "DocumentReference": "subject",
    "Observation": "subject",
    "QuestionnaireResponse": "subject",
    "Communication": "subject",
    "Task": "for",
    "EpisodeOfCare": "patient",
    "Flag": "subject",
}


class FhirTrust:
    """TrustSource, TrustWriter and RiskAcknowledger over a FHIR R4 server."""

    def __init__(self, options: FhirTrustOptions, http: FhirHttp, provider_code: str) -> None:
        self.options = options
        self._http = http
        self._provider_code = provider_code
        self._subjects: dict[str, JsonDict | None] = {}

    def __repr__(self) -> str:
        return f"FhirTrust({self._http!r})"

    # --- TrustSource -----------------------------------------------------------------
    def fetch_referrals(self, *, updated_since: datetime | None, page: str | None) -> SourcePage:
        """One page of our ServiceRequests changed at or after ``updated_since``."""
        if page:
            bundle = self._http.follow(page)
        else:
            bundle = self._http.search("ServiceRequest", self._search(updated_since))
        patients = {
            f"Patient/{p['id']}": p
            for p in entries(bundle, "include")
            if p.get("resourceType") == "Patient" and isinstance(p.get("id"), str)
        }
        requests = [
            r for r in entries(bundle, "match") if r.get("resourceType") == "ServiceRequest"
        ]
        records = [self._record(r, patients) for r in requests]
        return SourcePage(records=records, next_page=next_link(bundle))

    def _search(self, updated_since: datetime | None) -> dict[str, str]:
        params = dict(self.options.search)
        if self.options.performer:
            params["performer"] = self.options.performer
        else:
            params["performer:identifier"] = (
                f"{self.options.performer_system}|{self._provider_code}"
            )
        if updated_since is not None:
            params["_lastUpdated"] = "ge" + _instant(updated_since)
        params["_sort"] = "_lastUpdated"
        params["_count"] = str(self.options.page_size)
        if self.options.include_patient:
            params["_include"] = "ServiceRequest:subject"
        return params

    def _record(self, request: JsonDict, patients: dict[str, JsonDict]) -> JsonDict:
        subject = request.get("subject")
        reference = relative_reference(
            subject.get("reference") if isinstance(subject, dict) else None, "Patient"
        )
        patient = patients.get(reference) if reference else None
        if patient is None and reference is not None:
            patient = self._http.read("Patient", reference.split("/")[1])
        return {
            "id": request.get("id"),
            "updated_at": as_object(request.get("meta")).get("lastUpdated"),
            "service_request": request,
            "patient": patient,
        }

    # --- TrustWriter -----------------------------------------------------------------
    def write(self, item: WriteItem) -> WriteReceipt:
        """Conditionally create the item; an existing one with our reference is the answer."""
        if item.kind == _risk.KIND:
            return self._write_risk(item)
        resource = self._resource(item, item.payload)
        bundle = conditional_create(resource, self.options.identifier_system, item.client_reference)
        status, location = first_response(self._http.post("", bundle))
        return WriteReceipt(trust_id=location, already_present=status.startswith("200"))

    def find(self, item: WriteItem) -> WriteReceipt | None:
        """The resource carrying our client reference, if the server has one.

        A risk alert is found only when both its Flag and its Task are there; with one of
        them gone, writing again puts back the missing one and keeps the other.
        """
        if item.kind != _risk.KIND:
            kind = _resource_type(item)
            found = self._with_reference(kind, item.client_reference)
            return None if found is None else WriteReceipt(found, already_present=True)
        flag = self._with_reference("Flag", item.client_reference)
        task = self._with_reference("Task", item.client_reference)
        if flag is None or task is None:
            return None
        return WriteReceipt(task, already_present=True, detail={"flag": flag})

    def _with_reference(self, kind: str, reference: str) -> str | None:
        """``Type/id`` of the one resource of ``kind`` carrying our reference, or None."""
        found = self._http.search(
            kind, {"identifier": f"{self.options.identifier_system}|{reference}"}
        )
        hits = [r for r in entries(found, "match") if r.get("resourceType") == kind]
        if len(hits) > 1:
            raise TerminalError(
                f"{kind}: several resources carry this client reference", code="duplicate"
            )
        return f"{kind}/{checked_id(hits[0].get('id'), kind)}" if hits else None

    def _write_risk(self, item: WriteItem) -> WriteReceipt:
        """The Flag and its Task in one transaction; the Task's id is the receipt's."""
        resources = [
            self._resource(item, part) for part in _risk.parts(item.payload, item.client_reference)
        ]
        bundle = conditional_creates(
            resources, self.options.identifier_system, item.client_reference
        )
        (flag_status, flag), (task_status, task) = responses(self._http.post("", bundle), 2)
        if not (flag.startswith("Flag/") and task.startswith("Task/")):
            raise TransientError("transaction answered for other resources", ambiguous=True)
        present = flag_status.startswith("200") and task_status.startswith("200")
        return WriteReceipt(trust_id=task, already_present=present, detail={"flag": flag})

    # --- RiskAcknowledger ------------------------------------------------------------
    def acknowledgement(self, item: WriteItem, trust_id: str) -> RiskAcknowledgement | None:
        """Read the risk's Task: acknowledged once the trust has received or taken it on."""
        if item.kind != _risk.KIND:
            raise TerminalError(f"{item.kind} items are not acknowledged", code="not_a_risk")
        reference = relative_reference(trust_id, "Task")
        if reference is None:
            raise TerminalError("a risk alert's trust id is its Task (Task/<id>)", code="unsafe_id")
        task = self._http.read("Task", reference.split("/")[1])
        if task is None:
            raise TerminalError("the risk alert's Task is not on the server", code="not_found")
        ours = {"system": self.options.identifier_system, "value": item.client_reference}
        if not any(_same_identifier(i, ours) for i in as_list(task.get("identifier"))):
            raise TerminalError("that Task is not this risk alert's", code="mismatch")
        return _risk.acknowledgement(task)

    def _resource(self, item: WriteItem, payload: JsonDict) -> JsonDict:
        kind = _resource_type(item, payload)
        resource = copy.deepcopy(payload)
        resource.pop("client_reference", None)
        ours = {"system": self.options.identifier_system, "value": item.client_reference}
        identifiers = resource.get("identifier", [])
        if not isinstance(identifiers, list):
            raise TerminalError(f"{kind}.identifier must be a list", code="mapping_shape")
        resource["identifier"] = [i for i in identifiers if i != ours] + [ours]
        element = SUBJECT_ELEMENT.get(kind)
        if self.options.fill_subject and element and element not in resource:
            subject = self._subject(item.trust_referral_id)
            if subject is not None:
                resource[element] = subject
        try:
            return validate_resource(resource)
        except RecordValidationError as exc:
            raise TerminalError(
                f"outbound {item.kind} is not valid FHIR {kind} (field {exc.field})", code="fhir"
            ) from None

    def _subject(self, trust_referral_id: str) -> JsonDict | None:
        """The referral's patient reference, read once per referral and remembered."""
        if trust_referral_id not in self._subjects:
            request_id = checked_id(trust_referral_id, "trust referral id")
            request = self._http.read("ServiceRequest", request_id)
            if request is None:
                raise TerminalError(
                    "the referral's ServiceRequest is not on the server", code="not_found"
                )
            subject = request.get("subject")
            reference = subject.get("reference") if isinstance(subject, dict) else None
            self._subjects[trust_referral_id] = {"reference": reference} if reference else None
        found = self._subjects[trust_referral_id]
        return dict(found) if found else None


def _same_identifier(found: object, ours: JsonDict) -> bool:
    return isinstance(found, dict) and all(found.get(k) == v for k, v in ours.items())


def _resource_type(item: WriteItem, payload: JsonDict | None = None) -> str:
    kind = (item.payload if payload is None else payload).get("resourceType")
    if not isinstance(kind, str) or not FHIR_TYPE.fullmatch(kind):
        raise TerminalError(
            f"outbound {item.kind} has no resourceType: the fhir adapter needs a mapping "
            "whose outbound sections build FHIR resources (see mappings/fhir-r4.yaml)",
            code="mapping_shape",
        )
    return kind


def _instant(value: datetime) -> str:
    """UTC, to the millisecond (rounded down: the start stays closed), as servers expect."""
    aware = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%S.") + f"{aware.microsecond // 1000:03d}Z"
