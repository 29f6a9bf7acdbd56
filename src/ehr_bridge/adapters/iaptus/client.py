"""A client for the IAPTUS-style REST API described in ``docs/trust-api.md``.

HTTP failures are translated here, at the boundary, into the error tree so the engine
never sees ``requests`` exceptions. Bodies the trust sends back are never copied into
error messages: ``security.foreign_text.reduce_reply`` keeps the status, the error code if
it is a known one, the field path if it is a key of what we sent, and a hash of the body.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from pydantic import ConfigDict, Field, ValidationError

from ehr_bridge.adapters._advice import Advice, advice_for
from ehr_bridge.adapters._sessions import PerThreadSession
from ehr_bridge.adapters.base import (
    JsonDict,
    RiskAcknowledgement,
    SourcePage,
    TrustItem,
    WriteItem,
    WriteReceipt,
    staff_id,
)
from ehr_bridge.config import Secret, read_secret, validation_error
from ehr_bridge.errors import (
    ConflictError,
    TerminalError,
    TransientError,
)
from ehr_bridge.retry import RetryPolicy, call_with_retries
from ehr_bridge.security.foreign_text import (
    exception_name,
    reduce_reply,
    retry_after_seconds,
)
from ehr_bridge.security.transport import SecureSession, TransportOptions, build_session

ENDPOINTS = {
    "care_contact": "care-contacts",
    "clinical_note": "clinical-notes",
    "assessment": "assessments",
    "referral_status": "status",
    "risk_alert": "risk-alerts",
}
#: kinds the trust never lets a client change once written
NOT_UPDATABLE = frozenset({"referral_status", "risk_alert"})
#: a risk alert's statuses that mean someone on the duty team has seen it
ACKNOWLEDGED = frozenset({"acknowledged", "closed"})


class IaptusOptions(TransportOptions):
    """Options of the ``iaptus`` adapter in a connection's ``[connection.trust]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    base_url: str = Field(pattern=r"^https?://")
    token_env: str | None = None
    token_file: str | None = None
    page_size: int = Field(default=100, ge=1, le=500)
    #: whole-request deadline: connect, send, answer and body (docs/operations.md)
    timeout_seconds: float = Field(default=15, gt=0)
    read_attempts: int = Field(default=4, ge=1, le=10)


class IaptusClient:
    """TrustSource, TrustWriter, TrustReader, TrustUpdater and RiskAcknowledger (IAPTUS-style).

    Thread safe for writes (push runs several at once): each thread sends through its own
    HTTP session, and nothing else here changes after construction.
    """

    #: push may call ``write`` and ``find`` from several threads at once
    concurrent_writes = True

    def __init__(
        self,
        options: IaptusOptions,
        token: Secret | None,
        provider_code: str,
        session: requests.Session | None = None,
        advice: Advice | None = None,
    ) -> None:
        self.options = options
        #: what a connection failure or a refused token tells the operator to check
        self.advice = advice or advice_for(options.model_dump(), "trust", options.base_url)
        self._token = token
        self._provider_code = provider_code
        self._base = options.base_url.rstrip("/")
        self._http = session or SecureSession(options.limits)
        self._sessions = PerThreadSession(self._http)
        self._read_policy = RetryPolicy(options.read_attempts, base_delay=0.5, max_delay=5)

    def __repr__(self) -> str:
        return f"IaptusClient(base_url={self._base!r}, token={self._token!r})"

    # --- TrustSource -----------------------------------------------------------------
    def fetch_referrals(self, *, updated_since: datetime | None, page: str | None) -> SourcePage:
        """One page of referrals referred on to our provider, changed since the cursor."""
        params: dict[str, str] = {
            "referred_on_to": self._provider_code,
            "page_size": str(self.options.page_size),
        }
        if updated_since is not None:
            params["updated_since"] = _iso_z(updated_since)
        if page:
            params["page_token"] = page
        body = call_with_retries(
            self._read_policy, lambda: self._request("GET", "/referrals", params=params)
        )
        items = body.get("items")
        if not isinstance(items, list):
            raise TransientError("referral listing answered without an items list")
        next_page = body.get("next_page_token")
        next_token = str(next_page) if next_page else None
        if next_token is not None and next_token == page:
            raise TerminalError("referral listing names the same page as next: not followed")
        return SourcePage(records=items, next_page=next_token)

    # --- TrustWriter -----------------------------------------------------------------
    def write(self, item: WriteItem) -> WriteReceipt:
        """POST the item; a 409 for our client reference means it is already there."""
        payload = dict(item.payload, client_reference=item.client_reference)
        try:
            body = self._request("POST", self._item_path(item), json=payload)
        except ConflictError as exc:
            if exc.existing_id:
                return WriteReceipt(trust_id=exc.existing_id, already_present=True)
            raise
        return WriteReceipt(trust_id=str(body.get("id", "")))

    def find(self, item: WriteItem) -> WriteReceipt | None:
        """Look the item up by our client reference (read before re-write)."""
        params = {"client_reference": item.client_reference}
        body = call_with_retries(
            self._read_policy,
            lambda: self._request("GET", self._item_path(item), params=params),
        )
        items = body.get("items")
        for found in items if isinstance(items, list) else []:  # a hostile answer: any shape
            if not isinstance(found, dict) or found.get("id") in (None, ""):
                continue
            if found.get("client_reference") == item.client_reference:
                return WriteReceipt(trust_id=str(found["id"]), already_present=True)
        return None

    def _item_path(self, item: WriteItem) -> str:
        return _kind_path(item.trust_referral_id, item.kind)

    # --- TrustReader and TrustUpdater ------------------------------------------------
    def list_items(self, trust_referral_id: str, kind: str) -> list[TrustItem]:
        """Every item of ``kind`` on the referral, as the trust holds it now."""
        path = _kind_path(trust_referral_id, kind)
        body = call_with_retries(self._read_policy, lambda: self._request("GET", path))
        return [_trust_item(found) for found in body.get("items", []) if isinstance(found, dict)]

    def fetch_referral(self, trust_referral_id: str) -> JsonDict | None:
        """``GET /referrals/{id}``; None when the trust answers 404."""
        path = f"/referrals/{quote(trust_referral_id, safe='')}"
        try:
            return call_with_retries(self._read_policy, lambda: self._request("GET", path))
        except TerminalError as exc:
            if exc.code == "http_404":
                return None
            raise

    def update(self, item: WriteItem, trust_id: str) -> WriteReceipt:
        """``PUT`` our payload over the trust's item (status events and risk alerts cannot be)."""
        if item.kind in NOT_UPDATABLE:
            raise TerminalError(f"iaptus {item.kind} items cannot be updated", code="not_updatable")
        path = f"{self._item_path(item)}/{quote(trust_id, safe='')}"
        payload = dict(item.payload, client_reference=item.client_reference)
        body = self._request("PUT", path, json=payload)
        return WriteReceipt(trust_id=str(body.get("id", trust_id)), already_present=True)

    # --- RiskAcknowledger ------------------------------------------------------------
    def acknowledgement(self, item: WriteItem, trust_id: str) -> RiskAcknowledgement | None:
        """``GET`` the risk alert: acknowledged once its status is acknowledged or closed.

        ``at`` is the trust's ``acknowledged_at`` (else its ``updated_at``, else the time we
        read it); ``by`` is ``acknowledged_by`` if it has the shape of a staff id.
        """
        if item.kind != "risk_alert":
            raise TerminalError(f"{item.kind} items are not acknowledged", code="not_a_risk")
        path = f"{self._item_path(item)}/{quote(trust_id, safe='')}"
        body = call_with_retries(self._read_policy, lambda: self._request("GET", path))
        if body.get("status") not in ACKNOWLEDGED:
            return None
        at = _aware(body.get("acknowledged_at")) or _aware(body.get("updated_at"))
        return RiskAcknowledgement(
            at=at or datetime.now(UTC), by=staff_id(body.get("acknowledged_by"))
        )

    # --- HTTP ------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> JsonDict:
        headers = {"Accept": "application/json"}
        if self._token is not None:  # else the session's OAuth2 auth sets it
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        try:
            response = self._sessions.get().request(
                method,
                self._base + path,
                headers=headers,
                timeout=self.options.timeout_seconds,
                **kwargs,
            )
        except requests.ConnectionError as exc:
            label = f"{method} {_template(path)}"
            raise self.advice.unreachable(label, exc, ambiguous=method != "GET") from None
        except requests.RequestException as exc:
            raise TransientError(
                f"{method} {_template(path)}: {exception_name(exc)}", ambiguous=method != "GET"
            ) from None
        sent = kwargs.get("json") or kwargs.get("params")
        return _answer(method, path, response, sent, self.advice)


def _kind_path(trust_referral_id: str, kind: str) -> str:
    try:
        endpoint = ENDPOINTS[kind]
    except KeyError:
        raise TerminalError(f"iaptus adapter has no items of kind {kind}") from None
    return f"/referrals/{quote(trust_referral_id, safe='')}/{endpoint}"


def _trust_item(found: JsonDict) -> TrustItem:
    reference = found.get("client_reference")
    version = found.get("version")
    return TrustItem(
        trust_id=str(found.get("id", "")),
        client_reference=str(reference) if reference else None,
        fields=found,
        version=None if version is None else str(version),
    )


def _answer(
    method: str, path: str, response: requests.Response, sent: object, advice: Advice
) -> JsonDict:
    """A 2xx body, or the error its status stands for, reduced to what is safe to keep."""
    status = response.status_code
    body = _json_or_empty(response)
    if status < 300:
        return body
    error, field = body.get("error"), body.get("field")
    reply = reduce_reply(f"HTTP {status}", response.content, code=error, field=field, sent=sent)
    detail = f"{method} {_template(path)}: {reply}"
    if status in (401, 403):
        raise advice.refused(detail, status)
    if status == 409:
        existing = body.get("existing_id")
        raise ConflictError(detail, existing_id=_trust_id(existing))
    if status == 429 or status >= 500:
        raise TransientError(
            detail,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            ambiguous=method != "GET" and status >= 500,
        )
    raise TerminalError(detail, code=f"http_{status}")


def _trust_id(value: object) -> str | None:
    """An id the trust names, if it is a string or a number (a hostile answer: anything)."""
    ok = isinstance(value, str | int) and not isinstance(value, bool)
    return str(value) if ok and value else None


def _json_or_empty(response: requests.Response) -> JsonDict:
    try:
        body = response.json()
    except (ValueError, RecursionError):  # RecursionError: a JSON bomb past the session
        return {}
    return body if isinstance(body, dict) else {}


def _template(path: str) -> str:
    """The path with ids replaced, so an error never carries a record's identifier."""
    parts = path.split("/")
    return "/".join("{id}" if i in (2, 4) and len(parts) > 2 else p for i, p in enumerate(parts))


def _aware(value: object) -> datetime | None:
    """An ISO 8601 timestamp with a zone from a trust answer, else None (any shape comes)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None


def _iso_z(value: datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def create(
    options: dict[str, Any], *, base_dir: Path, key: str, provider_code: str
) -> IaptusClient:
    """Build the adapter from a connection's options, validating them at start-up."""
    try:
        parsed = IaptusOptions.model_validate(options)
    except ValidationError as exc:
        raise validation_error(exc, IaptusOptions, key) from None
    session = build_session(parsed, options, base_url=parsed.base_url, base_dir=base_dir, key=key)
    token = None if parsed.oauth2 else read_secret(options, "token", base_dir=base_dir, key=key)
    advice = advice_for(options, key, parsed.base_url)
    return IaptusClient(parsed, token, provider_code, session, advice)
