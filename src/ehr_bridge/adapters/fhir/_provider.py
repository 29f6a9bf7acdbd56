"""``FhirProvider``: a therapy platform that keeps its records on a FHIR R4 server.

Deliver: the referral's resources (Patient, ServiceRequest) are PUT under our own ids in
one transaction, so delivering again updates the same resources (a FHIR server treats an
unchanged PUT as a no-op) and the references inside the bundle (``Patient/<id>``) stay
true. With ``delivery = "message"`` the same resources go as a BaRS-style
``servicerequest-request`` message Bundle to ``[base]/$process-message``; the message id
is derived from the content, so a resent delivery is the same message.

Collect: the platform stores each session's artefacts as a ``collection`` Bundle resource.
``pending_submissions`` searches ``Bundle?type=collection&_lastUpdated=ge<marker>
&_sort=_lastUpdated`` (plus ``_tag`` when ``submission_tag`` is set) and offers those the
marker does not cover, oldest first, with the server-managed ``meta`` removed so the same
content always hashes the same. ``acknowledge`` advances the marker in ``state_file``
(see ``_marker`` for why a crash in between is harmless). Handles are
``Bundle/<id>@<lastUpdated>``: everything acknowledging needs, with no lookup.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from ehr_bridge.adapters.base import JsonDict, ProviderSubmission
from ehr_bridge.adapters.fhir._bundles import (
    FHIR_TYPE,
    as_list,
    as_object,
    checked_id,
    entries,
    message_bundle,
    message_outcome,
    next_link,
    put_transaction,
)
from ehr_bridge.adapters.fhir._http import FhirHttp
from ehr_bridge.adapters.fhir._marker import Marker, MarkerFile, parse_instant
from ehr_bridge.adapters.fhir._options import FhirProviderOptions
from ehr_bridge.errors import TerminalError, TransientError
from ehr_bridge.security.foreign_text import reduce_reply

_SERVER_META = ("versionId", "lastUpdated", "source")
#: MessageHeader.response.code (FHIR ResponseType): the only codes a message repeats
RESPONSE_CODES = frozenset({"ok", "transient-error", "fatal-error"})


class FhirProvider:
    """ProviderPort over a FHIR R4 server."""

    def __init__(self, options: FhirProviderOptions, http: FhirHttp, marker: MarkerFile) -> None:
        self.options = options
        self._http = http
        self._marker = marker

    def __repr__(self) -> str:
        return f"FhirProvider({self._http!r}, {self._marker!r})"

    # --- deliver ---------------------------------------------------------------------
    def deliver_referral(self, service_request_id: str, bundle: JsonDict) -> None:
        """Put the referral's resources on the platform's server (or send them as a message).

        Raises:
            TerminalError: the bundle has no ServiceRequest with this id, or an id that
                is not a FHIR id; sending it again cannot help.
        """
        resources = _referral_resources(service_request_id, bundle)
        if self.options.delivery == "message":
            self._send_message(service_request_id, resources)
        else:
            self._http.post("", put_transaction(resources, self._http.base))

    def _send_message(self, service_request_id: str, resources: list[JsonDict]) -> None:
        message = message_bundle(
            service_request_id,
            resources,
            source=self.options.message_source,
            destination=self.options.message_destination or self._http.base,
            timestamp=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        )
        header_id = message["entry"][0]["resource"]["id"]
        headers = {"X-Request-Id": str(uuid.uuid4()), "X-Correlation-Id": header_id}
        if self.options.target_identifier:
            headers["NHSD-Target-Identifier"] = self.options.target_identifier
        answer = self._http.post("$process-message", message, headers)
        outcome = message_outcome(answer)
        if outcome == "ok":
            return
        text = json.dumps(answer, sort_keys=True, ensure_ascii=False)
        reply = reduce_reply("answered", text, code=outcome, codes=RESPONSE_CODES)
        said = f"$process-message: the receiver answered {reply.code or 'an unknown code'}"
        if outcome == "transient-error":
            raise TransientError(said + reply.reference)
        raise TerminalError(said + reply.reference, code="nak")

    # --- collect ---------------------------------------------------------------------
    def pending_submissions(self) -> Iterator[ProviderSubmission]:
        """Session Bundles the marker does not cover yet, oldest first."""
        marker = self._marker.load()
        page = self._http.search("Bundle", self._search(marker))
        while True:
            for bundle in entries(page, "match"):
                submission = _submission(bundle, marker)
                if submission is not None:
                    yield submission
            link = next_link(page)
            if link is None:
                return
            page = self._http.follow(link)

    def _search(self, marker: Marker) -> dict[str, str]:
        params = {
            "type": "collection",
            "_sort": "_lastUpdated",
            "_count": str(self.options.page_size),
        }
        since = marker.search_value()
        if since:
            params["_lastUpdated"] = since
        if self.options.submission_tag:
            params["_tag"] = self.options.submission_tag
        return params

    def acknowledge(self, handle: str) -> None:
        """Remember that this submission is stored; repeating it changes nothing."""
        reference, _, stamp = handle.rpartition("@")
        kind, _, bundle_id = reference.partition("/")
        when = parse_instant(stamp)
        if kind != "Bundle" or when is None:
            raise TerminalError("not a handle this adapter issued", code="unsafe_handle")
        self._marker.advance(when, checked_id(bundle_id, "submission id"))


def _submission(bundle: JsonDict, marker: Marker) -> ProviderSubmission | None:
    """The offer for one stored Bundle, or None when acknowledged or not identifiable."""
    stamp, bundle_id = as_object(bundle.get("meta")).get("lastUpdated"), bundle.get("id")
    when = parse_instant(stamp)
    if when is None or not isinstance(bundle_id, str) or marker.covers(when, bundle_id):
        return None
    return ProviderSubmission(handle=f"Bundle/{bundle_id}@{stamp}", bundle=_content(bundle))


def _content(bundle: JsonDict) -> JsonDict:
    """The Bundle as the platform wrote it: without the meta the server manages."""
    body = copy.deepcopy(bundle)
    meta = {k: v for k, v in as_object(body.get("meta")).items() if k not in _SERVER_META}
    if meta:
        body["meta"] = meta
    else:
        body.pop("meta", None)
    return body


def _referral_resources(service_request_id: str, bundle: JsonDict) -> list[JsonDict]:
    found = [as_object(e).get("resource") for e in as_list(as_object(bundle).get("entry"))]
    resources = [r for r in found if isinstance(r, dict)]
    if not resources or len(resources) != len(found):
        raise TerminalError("referral bundle has no resources", code="not_a_referral")
    for resource in resources:
        checked_id(resource.get("id"), "a referral resource's id")
        if not FHIR_TYPE.fullmatch(str(resource.get("resourceType", ""))):
            raise TerminalError("a referral resource has no resourceType", code="not_a_referral")
    if not any(
        r["resourceType"] == "ServiceRequest" and r["id"] == service_request_id for r in resources
    ):
        raise TerminalError("referral bundle lacks its ServiceRequest", code="not_a_referral")
    return resources
