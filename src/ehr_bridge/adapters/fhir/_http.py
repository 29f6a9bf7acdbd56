"""HTTP to a FHIR R4 server, with every failure translated into the error tree here.

Reads (search, read, following a ``next`` link) are safe to repeat and retried a few times
within the call; writes (transaction and message Bundles) are never retried here, because
the outbox retries them across cycles after asking the server what it already holds. An
error message names the interaction by type only (``GET Patient/{id}``), the status, and
the OperationOutcome's issue code and element path, never its ``diagnostics`` (servers
quote values there) and never a response body, so it can be logged without patient data.

A ``next`` link is followed only when it lies under the configured base URL: the bearer
token must never be sent to a host the server merely named.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests

from ehr_bridge.adapters.base import JsonDict
from ehr_bridge.config import Secret
from ehr_bridge.errors import (
    ConflictError,
    ConnectionStopError,
    TerminalError,
    TransientError,
)
from ehr_bridge.retry import RetryPolicy, call_with_retries
from ehr_bridge.security.transport import SecureSession

FHIR_JSON = "application/fhir+json"


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
    ) -> None:
        self.base = base_url.rstrip("/")
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
        except requests.RequestException as exc:
            raise TransientError(
                f"{what}: {type(exc).__name__}", ambiguous=method != "GET"
            ) from None
        return answer(what, method, response)


def answer(what: str, method: str, response: requests.Response) -> JsonDict:
    """The JSON object a 2xx answer carries, or the error its status stands for."""
    status = response.status_code
    body = _json_object(response)
    if status < 300:
        if body is None:
            raise TransientError(
                f"{what}: HTTP {status} without a FHIR JSON body", ambiguous=method != "GET"
            )
        return body
    detail = f"{what}: HTTP {status}{_issue(body)}"
    if status in (401, 403):
        raise ConnectionStopError(detail)
    if status == 409:
        raise ConflictError(detail)
    if status == 429 or status >= 500:
        raise TransientError(
            detail, retry_after=_retry_after(response), ambiguous=method != "GET" and status >= 500
        )
    raise TerminalError(detail, code=f"http_{status}")


def _json_object(response: requests.Response) -> JsonDict | None:
    try:
        body = response.json()
    except (ValueError, RecursionError):  # RecursionError: a JSON bomb past the session
        return None
    return body if isinstance(body, dict) else None


def _issue(body: JsonDict | None) -> str:
    """`` (issue <code> at <path>)`` from an OperationOutcome.

    ``diagnostics`` is never read, and the code and path are kept only when they look like
    an issue code and a plain element path: a FHIRPath such as ``where(value='...')``
    could carry the value that was refused.
    """
    if not body or body.get("resourceType") != "OperationOutcome":
        return ""
    issues = body.get("issue")
    first = issues[0] if isinstance(issues, list) and issues else None
    if not isinstance(first, dict):
        return ""
    code = _safe(first.get("code"), _ISSUE_CODE)
    paths = first.get("expression")
    path = _safe(paths[0] if isinstance(paths, list) and paths else None, _ELEMENT_PATH)
    if not code and not path:
        return ""
    return f" (issue {code or 'unknown'}" + (f" at {path})" if path else ")")


_ISSUE_CODE = re.compile(r"[a-z][a-z\-]{0,40}")
_ELEMENT_PATH = re.compile(
    r"[A-Za-z][A-Za-z0-9_]*(\[[0-9]{1,4}\])?(\.[A-Za-z][A-Za-z0-9_]*(\[[0-9]{1,4}\])?){0,20}"
)


def _safe(value: object, pattern: re.Pattern[str]) -> str:
    return value if isinstance(value, str) and pattern.fullmatch(value) else ""


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
