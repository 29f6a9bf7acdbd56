"""The one HTTP base of the trust simulators, on the standard library's threading server.

A simulator brings its own records and rules: a route table (``Route``), a ``Dialect`` (how
its answers and errors look) and the state its handlers work on. The base does the rest
the same way for every simulator, in this order:

1. route by path template (``{name}`` is one decoded path segment); without valid
   credentials every path but health answers 401, then an unknown path 404 and a method
   no handler takes 405 with ``Allow``;
2. read the body: over ``Dialect.max_body`` it is drained and answered 413 (the connection
   stays usable; beyond eight times the limit it is closed instead); a POST or PUT body
   that is not UTF-8 JSON is a 400;
3. on API routes (every route outside ``/_sim/``, the simulator's own control endpoints),
   the latency and the fault the simulator's ``FaultPlan`` picks (``sim.faults``):
   ``status`` answers before the state is touched, ``reset`` closes the connection
   without an answer, ``drop`` runs the handler then closes it, ``delay`` answers late;
4. run the handler; an error it raises becomes the dialect's error answer
   (``Dialect.refusal``), anything else a 500.

Answers are JSON with ``Content-Length`` on keep-alive connections. The log names the
method, the route template and the status only: query strings and bodies can hold
identifiers. ``SimulatorBase`` is the front door every simulator shares: serve on a free
port in a daemon thread, or in the foreground, and stop, ending kept-alive connections.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self, cast
from urllib.parse import parse_qs, unquote, urlsplit

from ehr_bridge.errors import ConfigError, RecordValidationError
from ehr_bridge.sim.faults import Fault, FaultPlan
from ehr_bridge.sim.records import parse_timestamp

logger = logging.getLogger(__name__)

#: how often a serving thread checks for ``stop``; short so tests do not wait on teardown
_POLL_SECONDS = 0.05
#: the prefix of the simulators' own endpoints, which faults and latency leave alone
CONTROL = "/_sim/"


@dataclass(frozen=True)
class Request:
    """What a handler gets: decoded path parameters, the query, the parsed body, headers."""

    method: str
    params: dict[str, str] = field(default_factory=dict)
    #: every value of each query parameter, in order
    query: dict[str, list[str]] = field(default_factory=dict)
    body: Any = None
    headers: Message = field(default_factory=Message)
    #: ``http://host:port`` of the server that took the request
    server_url: str = ""

    @property
    def args(self) -> dict[str, str]:
        """The first value of each query parameter."""
        return {name: values[0] for name, values in self.query.items()}


@dataclass(frozen=True)
class Response:
    """A JSON answer."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


#: a handler: the simulator's ``state`` and the request
Handler = Callable[[Any, Request], Response]


@dataclass(frozen=True)
class Route:
    """One path template with a handler per method.

    ``where`` holds a pattern a parameter must match in full (else the path is not this
    route's); ``shown`` names the parameters written into the template in logs and fault
    rules (FHIR's resource type); ``auth`` is False only for health.
    """

    template: str
    methods: dict[str, Handler]
    auth: bool = True
    where: dict[str, str] = field(default_factory=dict)
    shown: tuple[str, ...] = ()

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """The template as a regex with one named group per ``{param}``."""
        return re.compile(re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(self.template)))

    def match(self, path: str) -> dict[str, str] | None:
        """The decoded parameters when ``path`` (no query string) is this route's."""
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        params = {name: unquote(value) for name, value in found.groupdict().items()}
        ok = all(re.fullmatch(rule, params[name]) for name, rule in self.where.items())
        return params if ok else None

    def label(self, params: dict[str, str]) -> str:
        """The template for logs and fault rules, with the ``shown`` parameters filled in."""
        label = self.template
        for name in self.shown:
            label = label.replace(f"{{{name}}}", params[name])
        return label


def resolve(routes: tuple[Route, ...], path: str) -> tuple[Route, dict[str, str]] | None:
    """The first route that takes ``path``, with its decoded parameters."""
    for route in routes:
        params = route.match(path)
        if params is not None:
            return route, params
    return None


def health(state: object, request: Request) -> Response:
    """GET /_sim/health: liveness, no credentials needed."""
    return Response(200, {"ok": True})


def export(state: Any, request: Request) -> Response:
    """GET /_sim/export: the whole record system (the state's ``export()``)."""
    return Response(200, state.export())


HEALTH = Route(f"{CONTROL}health", {"GET": health}, auth=False)
EXPORT = Route(f"{CONTROL}export", {"GET": export})


def int_arg(request: Request, name: str, default: int, rule: str) -> int:
    """A whole-number query parameter of up to six digits, or ``default`` when absent.

    Raises:
        RecordValidationError: anything else (``rule`` is the message; the field is named).
    """
    text = request.args.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"\d{1,6}", text):
        raise RecordValidationError(rule, field=name)
    return int(text)


def instant_arg(request: Request, name: str, rule: str) -> datetime | None:
    """An ISO 8601 timestamp query parameter with its zone, as aware UTC (None: absent).

    Raises:
        RecordValidationError: not such a timestamp (``rule`` is the message).
    """
    text = request.args.get(name)
    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        raise RecordValidationError(rule, field=name) from None


@dataclass(frozen=True)
class Dialect:
    """How one simulated API answers on its own: media type, error shape, limits, name.

    ``problems`` gives this API's (code, message) for each answer the base makes itself:
    ``malformed`` (400), ``unauthorised`` (401), ``not_found`` (404), ``method`` (405),
    ``too_large`` (413), ``fault`` (a ``status`` fault's status) and ``internal`` (500).
    ``refusal`` turns an error a handler raised into an answer (None: not one of its own).
    """

    name: str
    error: Callable[[int, str, str, str | None], Response]
    problems: dict[str, tuple[str, str]]
    refusal: Callable[[Exception], Response | None]
    max_body: int = 1024 * 1024
    content_type: str = "application/json; charset=utf-8"
    #: the ``WWW-Authenticate`` header of a 401, if the API sends one
    challenge: str | None = None
    #: what an empty POST or PUT body parses as (``b""`` is malformed)
    empty_body: bytes = b""

    def problem(self, kind: str, status: int, headers: dict[str, str] | None = None) -> Response:
        """The base's own answer of ``kind`` in this API's error shape."""
        code, message = self.problems[kind]
        answer = self.error(status, code, message, None)
        return Response(status, answer.body, {**answer.headers, **(headers or {})})


class _Dropped(Exception):
    """The request was handled, or not, but the answer must be withheld (a fault)."""


class _Server(ThreadingHTTPServer):
    """A threading server that knows its simulator and its kept-alive connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: SimulatorBase) -> None:
        super().__init__(address, _Handler)
        self.sim = sim
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """``http://host:port`` this server listens on."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def handle_error(self, request: object, client_address: object) -> None:
        """Log a failed connection by error type only; the default prints a traceback."""
        failure = sys.exc_info()[1]
        if isinstance(failure, ConnectionError):
            logger.debug("client went away: %s", type(failure).__name__)
        else:
            logger.error("connection failed: %s", type(failure).__name__)

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


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, routes it, and writes the JSON answer."""

    protocol_version = "HTTP/1.1"
    #: answers are written as headers then body; without this each costs a delayed-ACK wait
    disable_nagle_algorithm = True
    _template = "-"
    owner: _Server
    sim: SimulatorBase

    def setup(self) -> None:
        """Register the connection with the server (see ``_Server.close_connections``)."""
        super().setup()
        self.owner = cast(_Server, self.server)
        self.sim = self.owner.sim
        self.owner.track(self.connection, is_open=True)

    def finish(self) -> None:
        """Forget the connection once the client or the server has closed it."""
        self.owner.track(self.connection, is_open=False)
        super().finish()

    def version_string(self) -> str:
        """The ``Server`` header: the simulator's name."""
        return f"ehr-bridge-{self.sim.dialect.name}/1"

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        found = self.sim.resolve(url.path)
        self._template = found[0].label(found[1]) if found else "(unknown path)"
        raw, too_large = self._read_body()
        try:
            answer = self._answer(found, url.query, raw, too_large)
        except _Dropped:
            self.close_connection = True
            logger.debug("%s %s -> dropped by fault", self.command, self._template)
            return
        self._send(answer)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _answer(
        self,
        found: tuple[Route, dict[str, str]] | None,
        query: str,
        raw: bytes | None,
        too_large: bool,
    ) -> Response:
        sim, dialect, method = self.sim, self.sim.dialect, self.command
        if (found is None or found[0].auth) and not sim.authorised(self.headers):
            headers = {"WWW-Authenticate": dialect.challenge} if dialect.challenge else {}
            return dialect.problem("unauthorised", 401, headers)
        if found is None:
            return dialect.problem("not_found", 404)
        route, params = found
        if method not in route.methods:
            return dialect.problem("method", 405, {"Allow": ", ".join(sorted(route.methods))})
        if too_large:
            return dialect.problem("too_large", 413)
        body = None
        if method in ("POST", "PUT"):
            try:
                body = json.loads((raw or dialect.empty_body).decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return dialect.problem("malformed", 400)
        query_values = parse_qs(query, keep_blank_values=True)
        request = Request(method, params, query_values, body, self.headers, self.owner.url)
        if self._template.startswith(CONTROL):
            return self._call(route, request)
        return self._faulted(route, request, sim.faults.take(method, self._template))

    def _faulted(self, route: Route, request: Request, fault: Fault | None) -> Response:
        latency = self.sim.faults.rates.latency_ms
        if latency:
            time.sleep(latency / 1000.0)
        if fault is not None and fault.kind == "reset":
            raise _Dropped
        if fault is not None and fault.kind == "status":
            retry = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            return self.sim.dialect.problem("fault", fault.status, retry)
        answer = self._call(route, request)
        if fault is not None and fault.kind == "drop":
            raise _Dropped
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        return answer

    def _call(self, route: Route, request: Request) -> Response:
        """Run the handler, turning the errors it raises into the dialect's answers."""
        try:
            return route.methods[request.method](self.sim.state, request)
        except Exception as exc:
            refused = self.sim.dialect.refusal(exc)
            if refused is not None:
                return refused
            logger.error("unhandled %s on %s", type(exc).__name__, self._template)
            return self.sim.dialect.problem("internal", 500)

    def _read_body(self) -> tuple[bytes | None, bool]:
        """The body (None when absent) and whether it was over the limit (then drained)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return b"\x00", False
        if length > self.sim.dialect.max_body:
            self._drain(length)
            return None, True
        return (self.rfile.read(length) if length else None), False

    def _drain(self, length: int) -> None:
        if length > 8 * self.sim.dialect.max_body:
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
        self.send_header("Content-Type", self.sim.dialect.content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log method, route template and status only; never the query string or body."""
        logger.debug("%s %s -> %s", self.command, self._template, code)

    def log_message(self, format: str, *args: object) -> None:
        """Keep http.server's own messages out of stderr; their arguments may echo the URL."""
        logger.debug("http.server: %s", format)


def bearer_ok(headers: Message, token: str) -> bool:
    """True when ``Authorization`` is ``Bearer <token>`` (compared in constant time)."""
    scheme, _, given = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


class SimulatorBase:
    """The front door every simulator shares: serve on 127.0.0.1, in a thread or not; stop.

    A subclass sets ``routes``, ``dialect`` and ``api_path``, and in ``__init__`` the
    ``state`` its handlers work on, ``token`` (None: no authentication) and ``faults``.
    Tests and the demo ``start`` one in-process (port 0 picks a free port); the CLI runs
    one with ``serve_forever``.
    """

    routes: ClassVar[tuple[Route, ...]]
    dialect: ClassVar[Dialect]
    #: where the API lives below the server (``api_url``)
    api_path: ClassVar[str] = ""
    #: what the route handlers work on (their first argument)
    state: Any
    token: str | None
    faults: FaultPlan
    _server: _Server | None = None
    _thread: threading.Thread | None = None

    def authorised(self, headers: Message) -> bool:
        """Whether a request's credentials are good; by default a bearer ``token``."""
        return self.token is None or bearer_ok(headers, self.token)

    def resolve(self, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for a URL path, and its decoded parameters."""
        return resolve(self.routes, path)

    @property
    def server_url(self) -> str:
        """``http://host:port`` of the running server.

        Raises:
            ConfigError: the simulator is not serving.
        """
        if self._server is None:
            raise ConfigError("simulator is not running", key="sim")
        return self._server.url

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server (``ConfigError`` when not serving)."""
        return self.server_url

    @property
    def api_url(self) -> str:
        """The URL clients are configured with: ``<base>`` plus the API's path."""
        return f"{self.server_url}{self.api_path}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a daemon thread and return ``base_url`` (port 0 picks a free port)."""
        server = self._bind(host, port)
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_SECONDS},
            name=self.dialect.name,
            daemon=True,
        )
        self._thread.start()
        return self.base_url

    def serve_forever(
        self, host: str, port: int, *, on_ready: Callable[[str], None] | None = None
    ) -> None:
        """Serve in the foreground until KeyboardInterrupt; ``on_ready`` gets the base URL."""
        server = self._bind(host, port)
        if on_ready is not None:
            on_ready(self.base_url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._thread is not None:
            server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        server.server_close()
        server.close_connections()

    def __enter__(self) -> Self:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _bind(self, host: str, port: int) -> _Server:
        if self._server is not None:
            raise ConfigError("simulator is already running", key="sim")
        try:
            self._server = _Server((host, port), self)
        except OSError as exc:
            raise ConfigError(f"cannot listen on port {port}: {exc.strerror}", key="port") from exc
        return self._server
