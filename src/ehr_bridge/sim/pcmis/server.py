"""The PC-MIS-style API over HTTP on the standard library's threading server.

Base path ``/pcmis/api/v2``; the key goes in ``X-API-Key``. The request log holds the
method, the route template and the status only: paths, query strings and bodies can hold
identifiers. Errors answer ``{"errors": [{"code", "field", "message"}]}``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from ehr_bridge.errors import ConflictError, RecordValidationError
from ehr_bridge.sim.pcmis.records import SEGMENTS, parse_instant
from ehr_bridge.sim.pcmis.state import Page, PcmisState, UnknownReferralError

logger = logging.getLogger(__name__)

API = "/pcmis/api/v2"
KEY_HEADER = "X-API-Key"
MAX_BODY = 1024 * 1024
DEFAULT_PAGE_SIZE = 25
_KIND_BY_SEGMENT = {segment: kind for kind, segment in SEGMENTS.items()}


@dataclass(frozen=True)
class Answer:
    """A JSON answer."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, code: str, message: str, field_name: str | None = None) -> Answer:
    """An answer in this API's error shape."""
    return Answer(status, {"errors": [{"code": code, "field": field_name, "message": message}]})


class PcmisServer(ThreadingHTTPServer):
    """Carries the state, key and pending faults for the handlers."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: PcmisState, api_key: str) -> None:
        super().__init__(address, PcmisHandler)
        self.state = state
        self.api_key = api_key
        self._faults: list[Answer] = []
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()

    def fail_next(self, answer: Answer, count: int) -> None:
        """Answer the next ``count`` API requests with ``answer`` (transient-fault tests)."""
        with self._lock:
            self._faults.extend([answer] * count)

    def take_fault(self) -> Answer | None:
        """The next queued fault answer, if any."""
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def track(self, connection: socket.socket, *, is_open: bool) -> None:
        """Remember live keep-alive connections, so ``close_connections`` can end them."""
        with self._lock:
            (self._open.add if is_open else self._open.discard)(connection)

    def close_connections(self) -> None:
        """End every live connection: a stopped simulator stops answering kept-alive clients."""
        with self._lock:
            live, self._open = self._open, set()
        for connection in live:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class Request:
    """What a handler needs: path parameters, query, parsed body, and the Host for links."""

    params: tuple[str, ...]
    query: dict[str, str]
    body: Any
    host: str


Handler = Callable[[PcmisState, Request], Answer]


@dataclass(frozen=True)
class Route:
    """One path template, its pattern, and a handler per method."""

    template: str
    pattern: re.Pattern[str]
    methods: dict[str, Handler]


class PcmisHandler(BaseHTTPRequestHandler):
    """Reads one request, routes it, writes the JSON answer."""

    protocol_version = "HTTP/1.1"
    server_version = "ehr-bridge-pcmis-sim/1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        """Serve a GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Serve a POST."""
        self._dispatch("POST")

    @property
    def sim(self) -> PcmisServer:
        """The server, typed."""
        return cast(PcmisServer, self.server)

    def setup(self) -> None:
        """Register the connection with the server."""
        super().setup()
        self.sim.track(self.connection, is_open=True)

    def finish(self) -> None:
        """Forget the connection once either side has closed it."""
        self.sim.track(self.connection, is_open=False)
        super().finish()

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        body = self._body()
        try:
            answer = self._answer(method, parts.path, query, body)
        except UnknownReferralError:
            answer = error(404, "NOT_FOUND", "no referral with this reference")
        except ConflictError as exc:
            answer = error(409, "DUPLICATE_EXTERNAL_REF", exc.safe_message, "ExternalRef")
            answer.body["existingId"] = int(exc.existing_id or 0)
        except RecordValidationError as exc:
            answer = error(422, "VALIDATION", exc.reason, exc.field)
        self._send(answer)

    def _answer(self, method: str, path: str, query: dict[str, str], body: Any) -> Answer:
        route, params = _resolve(path)
        self._template = route.template if route else "(unknown path)"
        if route is not None and route.template == "/_sim/health":
            return Answer(200, {"ok": True})
        if not self._authorised():
            return error(401, "UNAUTHORISED", f"{KEY_HEADER} header required")
        if route is None:
            return error(404, "NOT_FOUND", "no such path")
        fault = self.sim.take_fault() if path.startswith(API) else None
        if fault is not None:
            return fault
        handler = route.methods.get(method)
        if handler is None:
            return error(405, "METHOD_NOT_ALLOWED", "method not allowed on this path")
        if isinstance(body, Answer):
            return body
        host = self.headers.get("Host", "localhost")
        return handler(self.sim.state, Request(params, query, body, host))

    def _authorised(self) -> bool:
        given = self.headers.get(KEY_HEADER, "").strip()
        return bool(given) and hmac.compare_digest(given.encode(), self.sim.api_key.encode())

    def _body(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            return error(413, "TOO_LARGE", f"body must be 0..{MAX_BODY} bytes")
        if self.command != "POST":
            self.rfile.read(length)
            return None
        try:
            return json.loads(self.rfile.read(length).decode("utf-8") or "null")
        except (UnicodeDecodeError, ValueError):
            return error(400, "MALFORMED_JSON", "body is not valid UTF-8 JSON")

    def _send(self, answer: Answer) -> None:
        data = json.dumps(answer.body, ensure_ascii=False).encode("utf-8")
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log method, route template and status only."""
        logger.debug("%s %s -> %s", self.command, getattr(self, "_template", "-"), code)

    def log_message(self, format: str, *args: object) -> None:
        """Keep http.server's own messages (which may echo the URL) out of stderr."""
        logger.debug("http.server: %s", format)


def _int(query: dict[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"\d{1,6}", text):
        raise RecordValidationError("must be a whole number", field=name)
    return int(text)


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError:
        raise RecordValidationError(
            "must be an ISO 8601 timestamp with an offset", field="modifiedSince"
        ) from None


def _listing(state: PcmisState, request: Request) -> Answer:
    query = request.query
    page = state.list_referrals(
        service=query.get("onwardService"),
        modified_since=_since(query.get("modifiedSince")),
        page_number=_int(query, "pageNumber", 1),
        page_size=_int(query, "pageSize", DEFAULT_PAGE_SIZE),
    )
    paging = {
        "pageNumber": page.number,
        "pageSize": page.size,
        "totalRecords": page.total_records,
        "totalPages": page.total_pages,
    }
    links = _links(page, request)
    return Answer(200, {"data": page.records, "paging": paging}, {"Link": links})


def _links(page: Page, request: Request) -> str:
    """RFC 8288 links to the first, last, next and previous pages of the same query."""
    base = f"http://{request.host}{API}/referrals"
    wanted = {"first": 1, "last": page.total_pages}
    if page.number < page.total_pages:
        wanted["next"] = page.number + 1
    if page.number > 1:
        wanted["prev"] = page.number - 1
    return ", ".join(
        f'<{base}?{urlencode({**request.query, "pageNumber": str(number)})}>; rel="{rel}"'
        for rel, number in wanted.items()
    )


def _one(state: PcmisState, request: Request) -> Answer:
    return Answer(200, state.get_referral(request.params[0]))


def _list(state: PcmisState, request: Request) -> Answer:
    reference, segment = request.params
    items = state.list_items(reference, _KIND_BY_SEGMENT[segment], request.query.get("externalRef"))
    return Answer(200, {"data": items})


def _create(state: PcmisState, request: Request) -> Answer:
    reference, segment = request.params
    return Answer(201, state.create_item(reference, _KIND_BY_SEGMENT[segment], request.body))


def _export(state: PcmisState, request: Request) -> Answer:
    return Answer(200, state.export())


def _health(state: PcmisState, request: Request) -> Answer:
    return Answer(200, {"ok": True})


_SEGMENT_PATTERN = "|".join(re.escape(s) for s in SEGMENTS.values())
ROUTES: tuple[Route, ...] = (
    Route(f"{API}/referrals", re.compile(re.escape(f"{API}/referrals")), {"GET": _listing}),
    Route(
        f"{API}/referrals/{{ref}}",
        re.compile(rf"{re.escape(API)}/referrals/([^/]+)"),
        {"GET": _one},
    ),
    Route(
        f"{API}/referrals/{{ref}}/{{collection}}",
        re.compile(rf"{re.escape(API)}/referrals/([^/]+)/({_SEGMENT_PATTERN})"),
        {"GET": _list, "POST": _create},
    ),
    Route("/_sim/export", re.compile("/_sim/export"), {"GET": _export}),
    Route("/_sim/health", re.compile("/_sim/health"), {"GET": _health}),
)


def _resolve(path: str) -> tuple[Route | None, tuple[str, ...]]:
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match:
            return route, tuple(unquote(group) for group in match.groups())
    return None, ()
