"""HTTP for the generic REST adapter: auth header, JSON answers, errors translated here.

The engine never sees a ``requests`` exception or a response body. An error message
carries the method, the endpoint *template* from the mapping (never a path with ids in it),
and what ``security.foreign_text.reduce_reply`` keeps of the answer: the status, the error
code the API named if it is a known one, the field if it is a key of what we sent, and a
hash of the body. A record system that echoes values into its errors cannot leak them
through us.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from ehr_bridge.adapters._advice import Advice, advice_for
from ehr_bridge.adapters._sessions import PerThreadSession
from ehr_bridge.config import Secret
from ehr_bridge.errors import ConflictError, TerminalError, TransientError
from ehr_bridge.mapping.api import Api
from ehr_bridge.security.foreign_text import (
    Reply,
    exception_name,
    reduce_reply,
    retry_after_seconds,
)
from ehr_bridge.security.transport import SecureSession

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """A successful JSON answer and its RFC 8288 links (``rel`` -> URL)."""

    body: Any
    links: dict[str, str] = field(default_factory=dict)


class Http:
    """Sends requests to one record system with the mapping's auth header and headers."""

    def __init__(
        self,
        base_url: str,
        api: Api,
        token: Secret | None,
        *,
        timeout: float,
        session: requests.Session | None = None,
        advice: Advice | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._advice = advice or advice_for({}, "trust", base_url)
        self._origin = _origin(self.base_url)
        self._api = api
        self._token = token
        self._timeout = timeout
        self._session = session or SecureSession()
        self._sessions = PerThreadSession(self._session)  # push writes from several threads

    def __repr__(self) -> str:
        return f"Http(base_url={self.base_url!r}, token={self._token!r})"

    def url(self, path: str) -> str:
        """An endpoint path from the mapping, after the base URL."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def same_origin(self, url: str) -> bool:
        """True if ``url`` is on the configured host: only there may the token go."""
        return _origin(url) == self._origin

    def call(
        self,
        method: str,
        url: str,
        *,
        label: str,
        params: dict[str, str] | None = None,
        body: JsonDict | None = None,
        conflict_id: str | None = None,
    ) -> Answer:
        """One request; ``label`` (method and endpoint template) is what errors name.

        ``conflict_id`` is the api location (e.g. ``writes.assessment.create.existing_id``)
        of the existing item's id in a 409 answer, carried on the ``ConflictError``.
        """
        try:
            response = self._sessions.get().request(
                method, url, params=params, json=body, headers=self._headers(),
                timeout=self._timeout,
            )  # fmt: skip
        except requests.ConnectionError as exc:
            raise self._advice.unreachable(label, exc, ambiguous=method != "GET") from None
        except requests.RequestException as exc:
            raise TransientError(
                f"{label}: {exception_name(exc)}", ambiguous=method != "GET"
            ) from None
        return self._answer(method, label, response, conflict_id, body or params)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", **self._api.spec.headers}
        if self._token is not None:  # else the session's OAuth2 auth sets Authorization
            auth = self._api.spec.auth
            headers[auth.header] = f"{auth.scheme} {self._token.reveal()}".strip()
        return headers

    def _answer(
        self,
        method: str,
        label: str,
        response: requests.Response,
        conflict_id: str | None,
        sent: object,
    ) -> Answer:
        body = _json(response)
        status = response.status_code
        if status < 300:
            links = {rel: str(link.get("url", "")) for rel, link in response.links.items()}
            return Answer(body, links)
        detail = f"{label}: {self._reply(status, response, body, sent)}"
        if status in (401, 403):
            raise self._advice.refused(detail, status)
        if status == 409:
            existing = self._api.search(conflict_id, body) if conflict_id else None
            ok = isinstance(existing, str | int) and not isinstance(existing, bool)
            raise ConflictError(detail, existing_id=str(existing) if ok and existing else None)
        if status == 429 or status >= 500:
            raise TransientError(
                detail,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                ambiguous=method != "GET" and status >= 500,
            )
        raise TerminalError(detail, code=f"http_{status}")

    def _reply(self, status: int, response: requests.Response, body: Any, sent: object) -> Reply:
        """The answer's status, known code, field of ours and hash; nothing else of it."""
        code = self._api.search("errors.code", body)
        where = self._api.search("errors.field", body)
        return reduce_reply(f"HTTP {status}", response.content, code=code, field=where, sent=sent)


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError):  # RecursionError: a JSON bomb past the session
        return None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
