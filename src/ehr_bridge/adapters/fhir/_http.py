"""HTTP to a FHIR R4 server, with every failure translated into the error tree here.

Reads (search, read, following a ``next`` link) are safe to repeat and retried a few times
within the call; writes (transaction and message Bundles) are never retried here, because
the outbox retries them across cycles after asking the server what it already holds. An
error message names the interaction by type only (``GET Patient/{id}``), and keeps of the
answer what ``security.foreign_text.reduce_reply`` lets through: the status, the
OperationOutcome's issue code if it is a FHIR IssueType, its element path if the resource
we sent has that element, and a hash of the body; never ``diagnostics`` (servers quote
values there) and never the body itself, so it can be logged without patient data.

A ``next`` link is followed only when it lies under the configured base URL: the bearer
token must never be sent to a host the server merely named.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests

from ehr_bridge.adapters._advice import Advice, advice_for
from ehr_bridge.adapters.base import JsonDict
from ehr_bridge.config import Secret
from ehr_bridge.errors import (
    ConflictError,
    ConnectionStopError,
    TerminalError,
    TransientError,
)
from ehr_bridge.retry import RetryPolicy, call_with_retries
from ehr_bridge.security.foreign_text import (
    Reply,
    exception_name,
    reduce_reply,
    retry_after_seconds,
)
from ehr_bridge.security.transport import SecureSession

FHIR_JSON = "application/fhir+json"
#: the IssueType value set (R4): the only issue codes an error message repeats
ISSUE_TYPES = frozenset(
    {
        "invalid", "structure", "required", "value", "invariant", "security", "login",
        "unknown", "expired", "forbidden", "suppressed", "processing", "not-supported",
        "duplicate", "multiple-matches", "not-found", "deleted", "too-long", "code-invalid",
        "extension", "too-costly", "business-rule", "conflict", "transient", "lock-error",
        "no-store", "exception", "timeout", "incomplete", "throttled", "informational",
    }
)  # fmt: skip


class FhirHttp:
    """A FHIR base URL, its credentials and the retry policy for reads."""

    def __init__(
        self,
        base_url: str,
        token: Secret | None,
        *,
        timeout: float,
        read_attempts: int,
        session: requests.Session | None = None,
        advice: Advice | None = None,
    ) -> None:
        self.base = base_url.rstrip("/")
        #: what a connection failure or a refused token tells the operator to check
        self.advice = advice or advice_for({}, "fhir", base_url)
        self._token = token
        self._timeout = timeout
        self._http = session or SecureSession()
        self._reads = RetryPolicy(read_attempts, base_delay=0.5, max_delay=5)

    def __repr__(self) -> str:
        return f"FhirHttp(base={self.base!r}, token={self._token!r})"

    def search(self, kind: str, params: dict[str, str]) -> JsonDict:
        """``GET [base]/kind?params``: one searchset page."""
        url = f"{self.base}/{quote(kind, safe='')}"
        return self._read(lambda: self._send("GET", url, f"GET {kind}", params=params))

    def follow(self, url: str) -> JsonDict:
        """The page a searchset's ``next`` link names (only under the base URL)."""
        url = urljoin(self.base + "/", url)  # FHIR says absolute; some servers send relative
        if not self._under_base(url):
            raise ConnectionStopError(
                "GET next page: the server's next link is not under base_url; set base_url "
                "to the address the server calls itself (check proxies)"
            )
        return self._read(lambda: self._send("GET", url, "GET next page"))

    def read(self, kind: str, resource_id: str) -> JsonDict | None:
        """``GET [base]/kind/id``, or None when the server answers 404 or 410."""
        url = f"{self.base}/{quote(kind, safe='')}/{quote(resource_id, safe='')}"
        try:
            return self._read(lambda: self._send("GET", url, f"GET {kind}/{{id}}"))
        except TerminalError as exc:
            if exc.code in ("http_404", "http_410"):
                return None
            raise

    def post(self, path: str, body: JsonDict, headers: dict[str, str] | None = None) -> JsonDict:
        """``POST [base]/path`` of a Bundle; a lost answer is an ambiguous TransientError."""
        url = f"{self.base}/{path}" if path else self.base
        what = f"POST {path or '(transaction)'}"
        return self._send("POST", url, what, json=body, headers=headers or {})

    def _read(self, call: Any) -> JsonDict:
        result: JsonDict = call_with_retries(self._reads, call)
        return result

    def _under_base(self, url: str) -> bool:
        link, base = urlsplit(url), urlsplit(self.base)
        same_origin = (link.scheme, link.netloc) == (base.scheme, base.netloc)
        return same_origin and (link.path == base.path or link.path.startswith(base.path + "/"))

    def _send(
        self, method: str, url: str, what: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> JsonDict:
        sent = {"Accept": FHIR_JSON, **(headers or {})}
        if method != "GET":
            sent["Content-Type"] = f"{FHIR_JSON}; charset=utf-8"
        if self._token is not None:
            sent["Authorization"] = f"Bearer {self._token.reveal()}"
        try:
            response = self._http.request(method, url, headers=sent, timeout=self._timeout, **kw)
        except requests.ConnectionError as exc:
            raise self.advice.unreachable(what, exc, ambiguous=method != "GET") from None
        except requests.RequestException as exc:
            raise TransientError(
                f"{what}: {exception_name(exc)}", ambiguous=method != "GET"
            ) from None
        return answer(what, method, response, kw.get("json") or kw.get("params"), self.advice)


def answer(
    what: str,
    method: str,
    response: requests.Response,
    sent: object = None,
    advice: Advice | None = None,
) -> JsonDict:
    """The JSON object a 2xx answer carries, or the error its status stands for."""
    status = response.status_code
    body = _json_object(response)
    if status < 300:
        if body is None:
            raise TransientError(
                f"{what}: HTTP {status} without a FHIR JSON body", ambiguous=method != "GET"
            )
        return body
    detail = f"{what}: {_described(_issue(status, response, body, sent))}"
    if status in (401, 403):
        raise (advice or advice_for({}, "fhir", "")).refused(detail, status)
    if status == 409:
        raise ConflictError(detail)
    if status == 429 or status >= 500:
        raise TransientError(
            detail,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            ambiguous=method != "GET" and status >= 500,
        )
    raise TerminalError(detail, code=f"http_{status}")


def _json_object(response: requests.Response) -> JsonDict | None:
    try:
        body = response.json()
    except (ValueError, RecursionError):  # RecursionError: a JSON bomb past the session
        return None
    return body if isinstance(body, dict) else None


def _issue(status: int, response: requests.Response, body: JsonDict | None, sent: object) -> Reply:
    """The first OperationOutcome issue's code and element path, as far as they are safe.

    ``diagnostics`` is never read; a FHIRPath such as ``where(value='...')`` is not an
    element of what we sent, so it is dropped with the rest of the body.
    """
    first: object = None
    if body and body.get("resourceType") == "OperationOutcome":
        issues = body.get("issue")
        first = issues[0] if isinstance(issues, list) and issues else None
    issue = first if isinstance(first, dict) else {}
    paths = issue.get("expression")
    path = paths[0] if isinstance(paths, list) and paths else None
    code = issue.get("code")
    return reduce_reply(
        f"HTTP {status}", response.content, code=code, codes=ISSUE_TYPES, field=path, sent=sent
    )


def _described(reply: Reply) -> str:
    """`` HTTP 422 (issue invalid at Observation.status) reply #…``, FHIR's way of saying it."""
    if not reply.code and not reply.field:
        return reply.status + reply.reference
    at = f" at {reply.field}" if reply.field else ""
    return f"{reply.status} (issue {reply.code or 'unknown'}{at}){reply.reference}"
