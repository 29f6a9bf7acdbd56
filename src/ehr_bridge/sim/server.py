"""HTTP plumbing for the trust simulator on the standard library's threading server.

The request log names the method, the route *template* and the status only: query strings
and bodies can hold identifiers, so they never reach a log line. Errors from the state are
translated here into the API's error body ``{"error", "message", "field"}``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast
from urllib.parse import parse_qs, urlsplit

from ehr_bridge.errors import ConflictError, RecordValidationError
from ehr_bridge.sim.faults import Fault, FaultPlan
from ehr_bridge.sim.routes import Request, Response, Route, resolve
from ehr_bridge.sim.state import TrustState, UnknownItemError, UnknownReferralError

logger = logging.getLogger(__name__)

#: largest request body the API accepts (413 above it)
MAX_BODY = 1024 * 1024
#: above this a too-large body is not even drained; the connection is closed instead
_MAX_DRAIN = 8 * MAX_BODY


class SimServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the state, token and fault plan for handlers."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], state: TrustState, token: str, faults: FaultPlan
    ) -> None:
        super().__init__(address, SimRequestHandler)
        self.state = state
        self.token = token
        self.faults = faults
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        """Log a failed connection by error type only; the default prints a traceback."""
        failure = sys.exc_info()[1]
        if isinstance(failure, ConnectionError):
            logger.debug("client went away: %s", type(failure).__name__)
        else:
            logger.error("connection failed: %s", type(failure).__name__)

    def track(self, connection: socket.socket, *, is_open: bool) -> None:
        """Remember live keep-alive connections so ``close_connections`` can end them."""
        with self._open_lock:
            if is_open:
                self._open.add(connection)
            else:
                self._open.discard(connection)

    def close_connections(self) -> None:
        """End every live connection, so a stopped simulator stops answering kept-alive clients."""
        with self._open_lock:
            live, self._open = self._open, set()
        for connection in live:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def error(status: int, code: str, message: str, field: str | None = None) -> Response:
    """An answer in the API's error shape."""
    return Response(status, {"error": code, "message": message, "field": field})


class _Dropped(Exception):
    """The request was handled but the answer must be withheld (``drop`` fault)."""


class SimRequestHandler(BaseHTTPRequestHandler):
    """Reads one request, routes it, and writes the JSON answer."""

    protocol_version = "HTTP/1.1"
    server_version = "ehr-bridge-trust-sim/1"
    #: answers are written as headers then body; without this each costs a delayed-ACK wait
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        """Serve a GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Serve a POST."""
        self._dispatch("POST")

    def do_PUT(self) -> None:
        """Serve a PUT (item updates, fault settings); 405 where no route takes it."""
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        """Answer 405 (no route takes PATCH)."""
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        """Answer 405 (no route takes DELETE)."""
        self._dispatch("DELETE")

    def setup(self) -> None:
        """Register the connection with the server (see ``SimServer.close_connections``)."""
        super().setup()
        self.sim.track(self.connection, is_open=True)

    def finish(self) -> None:
        """Forget the connection once the client or the server has closed it."""
        self.sim.track(self.connection, is_open=False)
        super().finish()

    @property
    def sim(self) -> SimServer:
        """The server this handler belongs to, typed."""
        return cast(SimServer, self.server)

    def _dispatch(self, method: str) -> None:
        parsed = urlsplit(self.path)
        found = resolve(parsed.path)
        self._template = found[0].template if found else "(unknown path)"
        raw, too_large = self._read_body()
        try:
            answer = self._answer(method, found, parsed.query, raw, too_large)
        except _Dropped:
            self.close_connection = True
            logger.debug("%s %s -> dropped by fault", method, self._template)
            return
        self._send(answer)

    def _answer(
        self,
        method: str,
        found: tuple[Route, dict[str, str]] | None,
        query: str,
        raw: bytes | None,
        too_large: bool,
    ) -> Response:
        if (found is None or found[0].auth) and not self._authorised():
            return _unauthorised()
        if found is None:
            return error(404, "not_found", "no such path")
        route, params = found
        handler = route.methods.get(method)
        if handler is None:
            answer = error(405, "method_not_allowed", "method not allowed on this path")
            return Response(405, answer.body, {"Allow": ", ".join(sorted(route.methods))})
        if too_large:
            return error(413, "payload_too_large", f"body larger than {MAX_BODY} bytes")
        body = _parse_json(raw) if method in ("POST", "PUT") else None
        if isinstance(body, Response):
            return body
        request = Request(method, params, _first_values(query), body)
        return self._run(route, request, self.sim.faults.take(method, route.template))

    def _run(self, route: Route, request: Request, fault: Fault | None) -> Response:
        latency = self.sim.faults.rates.latency_ms
        if latency and route.template.startswith("/api/"):
            time.sleep(latency / 1000.0)
        if fault is not None and fault.kind == "reset":
            raise _Dropped
        if fault is not None and fault.kind == "status":
            return _fault_status(fault)
        answer = _call(route, request, self.sim.state)
        if fault is not None and fault.kind == "drop":
            raise _Dropped
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        return answer

    def _authorised(self) -> bool:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        return hmac.compare_digest(token.strip().encode(), self.sim.token.encode())

    def _read_body(self) -> tuple[bytes | None, bool]:
        """The body (None when absent) and whether it was over the limit (then drained)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return b"\x00", False
        if length > MAX_BODY:
            self._drain(length)
            return None, True
        return (self.rfile.read(length) if length else None), False

    def _drain(self, length: int) -> None:
        if length > _MAX_DRAIN:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)

    def _send(self, answer: Response) -> None:
        data = json.dumps(answer.body, ensure_ascii=False).encode("utf-8")
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log method, route template and status only; never the query string or body."""
        logger.debug("%s %s -> %s", self.command, getattr(self, "_template", "-"), code)

    def log_message(self, format: str, *args: object) -> None:
        """Keep http.server's own messages out of stderr; their arguments may echo the URL."""
        logger.debug("http.server: %s", format)


def _call(route: Route, request: Request, state: TrustState) -> Response:
    """Run a handler, translating the error tree into API error answers."""
    try:
        return route.methods[request.method](state, request)
    except UnknownReferralError:
        return error(404, "not_found", "no referral with this id")
    except UnknownItemError:
        return error(404, "not_found", "no item with this id on this referral")
    except ConflictError as exc:
        answer = error(409, "conflict", exc.safe_message, "client_reference")
        return Response(409, {**answer.body, "existing_id": exc.existing_id})
    except RecordValidationError as exc:
        return error(422, "validation", exc.reason, exc.field)
    except Exception as exc:
        logger.error("unhandled %s on %s", type(exc).__name__, route.template)
        return error(500, "internal", "internal simulator error")


def _parse_json(raw: bytes | None) -> object:
    """The decoded body, or a 400 answer when it is not JSON."""
    try:
        return json.loads((raw or b"").decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return error(400, "malformed_json", "body is not valid UTF-8 JSON")


def _unauthorised() -> Response:
    answer = error(401, "unauthorized", "bearer token required")
    return Response(401, answer.body, {"WWW-Authenticate": 'Bearer realm="trust-sim"'})


def _first_values(query: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(query, keep_blank_values=True).items()}


def _fault_status(fault: Fault) -> Response:
    answer = error(fault.status, "unavailable", "simulated fault, try again later")
    headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
    return Response(fault.status, answer.body, headers)
