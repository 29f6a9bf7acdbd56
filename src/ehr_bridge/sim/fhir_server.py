"""A small FHIR R4 REST server on 127.0.0.1, for the ``fhir`` adapters' tests and demos.

It plays either side: a trust's FHIR facade seeded with referrals
(``FhirServerSimulator.trust``: ServiceRequest + Patient per referral, some of them
deliberately broken) or an empty server a therapy platform keeps its records on. The
interactions it supports are listed in ``fhir_routes``; search in ``fhir_search``.

HTTP details: the FHIR base is ``<http://host:port>/fhir``; bodies are
``application/fhir+json``; with a token every request needs ``Authorization: Bearer``
(401 otherwise); errors are OperationOutcomes. ``faults`` takes the trust simulator's
counted fault rules (``sim.faults.Fault``) matched on the method and the path template,
for example ``Fault("drop", "POST", "/fhir")`` commits a transaction and then withholds
the answer. The request log names the method, the template and the status only: query
strings and bodies hold identifiers.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import cast
from urllib.parse import parse_qs, unquote, urlsplit

from ehr_bridge.errors import ConfigError
from ehr_bridge.sim.faults import Fault, FaultPlan
from ehr_bridge.sim.fhir_routes import (
    BASE_PATH,
    FhirRequest,
    FhirResponse,
    handle,
    outcome,
    template,
)
from ehr_bridge.sim.fhir_seed import seed_trust
from ehr_bridge.sim.fhir_store import Clock, FhirStore

logger = logging.getLogger(__name__)

#: the simulator's default bearer token (a test fixture, not a secret)
DEFAULT_FHIR_TOKEN = "fhir-sim-token"  # noqa: S105
MAX_BODY = 4 * 1024 * 1024
_POLL_SECONDS = 0.05


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: FhirServerSimulator) -> None:
        super().__init__(address, _Handler)
        self.sim = sim

    def handle_error(self, request: object, client_address: object) -> None:
        """Log a failed connection without the default traceback (it can echo the request)."""
        logger.debug("fhir simulator connection failed")


class _Dropped(Exception):
    """The interaction ran, but the answer must be withheld (``drop`` or ``reset`` fault)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ehr-bridge-fhir-sim/1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        """Serve a GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Serve a POST."""
        self._dispatch("POST")

    def do_PUT(self) -> None:
        """Serve a PUT."""
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        """Answer 405: the simulator never deletes."""
        self._dispatch("DELETE")

    @property
    def sim(self) -> FhirServerSimulator:
        return cast(_Server, self.server).sim

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._body()
        if url.path == "/_sim/health":
            self._template = url.path
            self._send(FhirResponse(200, {"ok": True}))
            return
        if url.path != BASE_PATH and not url.path.startswith(BASE_PATH + "/"):
            self._template = "(unknown path)"
            self._send(outcome(404, "not-found", "no such path"))
            return
        parts = [unquote(p) for p in url.path[len(BASE_PATH) :].strip("/").split("/") if p]
        self._template = template(parts)
        try:
            answer = self._answer(method, parts, url.query, body)
        except _Dropped:
            self.close_connection = True
            return
        self._send(answer)

    def _answer(
        self, method: str, parts: list[str], query: str, body: bytes | None
    ) -> FhirResponse:
        if not self._authorised():
            return outcome(401, "login", "bearer token required")
        parsed: object = None
        if method in ("POST", "PUT"):
            try:
                parsed = json.loads((body or b"").decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return outcome(400, "structure", "body is not UTF-8 JSON")
        request = FhirRequest(
            method,
            parts,
            parse_qs(query, keep_blank_values=True),
            parsed,
            self.headers.get("If-None-Exist"),
        )
        return self._run(request, self.sim.faults.take(method, self._template))

    def _run(self, request: FhirRequest, fault: Fault | None) -> FhirResponse:
        if fault is not None and fault.kind == "reset":
            raise _Dropped
        if fault is not None and fault.kind == "status":
            answer = outcome(fault.status, "transient", "simulated fault, try again later")
            if fault.retry_after is not None:
                answer.headers["Retry-After"] = f"{fault.retry_after:g}"
            return answer
        answer = handle(self.sim.store, self.sim.base_url, request)
        if fault is not None and fault.kind == "drop":
            raise _Dropped
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        return answer

    def _authorised(self) -> bool:
        if self.sim.token is None:
            return True
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.sim.token.encode()
        )

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length > 0 else None

    def _send(self, answer: FhirResponse) -> None:
        data = json.dumps(answer.body, ensure_ascii=False).encode("utf-8")
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/fhir+json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="fhir-sim"')
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log method, path template and status only; never the query string or body."""
        logger.debug("%s %s -> %s", self.command, getattr(self, "_template", "-"), code)

    def log_message(self, format: str, *args: object) -> None:
        """Keep http.server's own messages (which can echo the URL) out of stderr."""
        logger.debug("http.server: %s", format)


class FhirServerSimulator:
    """A FHIR R4 server on loopback, deterministic by seed when seeded as a trust.

    Attributes:
        store: every resource, for direct inspection and edits in tests.
        faults: counted fault rules (off until a rule is added).
        hostile_fields: for a seeded trust, ServiceRequest id -> the ReferralFacts field its
            deliberate defect breaks (what quarantine must name).
    """

    def __init__(self, *, token: str | None = DEFAULT_FHIR_TOKEN, clock: Clock | None = None):
        if token == "":
            raise ConfigError("must not be empty (use None for no authentication)", key="token")
        self.store = FhirStore(clock)
        self.faults = FaultPlan()
        self.token = token
        self.hostile_fields: dict[str, str] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def trust(
        cls,
        *,
        seed: int = 1,
        referrals: int = 20,
        hostile: int = 0,
        provider_code: str = "IESO01",
        token: str | None = DEFAULT_FHIR_TOKEN,
    ) -> FhirServerSimulator:
        """A trust's FHIR facade holding generated referrals (see ``fhir_seed``)."""
        sim = cls(token=token)
        sim.hostile_fields = seed_trust(
            sim.store, seed=seed, referrals=referrals, hostile=hostile, provider_code=provider_code
        )
        return sim

    @property
    def base_url(self) -> str:
        """The FHIR base clients are configured with: ``http://host:port/fhir``.

        Raises:
            ConfigError: the simulator is not serving.
        """
        if self._server is None:
            raise ConfigError("FHIR simulator is not running", key="sim")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{BASE_PATH}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a daemon thread and return the FHIR base URL (port 0 picks a free port)."""
        if self._server is not None:
            raise ConfigError("FHIR simulator is already running", key="sim")
        try:
            self._server = _Server((host, port), self)
        except OSError as exc:
            raise ConfigError(f"cannot listen on port {port}: {exc.strerror}", key="port") from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_SECONDS},
            name="fhir-sim",
            daemon=True,
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        server.server_close()

    def __enter__(self) -> FhirServerSimulator:
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
