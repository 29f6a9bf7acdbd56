"""The daemon's loopback HTTP server: ``GET /healthz`` (JSON) and ``GET /metrics`` (Prometheus).

It runs on the standard library's threading server in a daemon thread beside the
scheduler. It has no authentication, which is why the config accepts loopback addresses
only. Nothing it serves or logs names a patient: the request log carries the path (one of
two fixed routes, or "other") and the status.
"""

from __future__ import annotations

import errno
import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from ehr_bridge.errors import ConfigError
from ehr_bridge.observability.health import HealthChecker

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.2


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, health: HealthChecker
    ) -> None:
        super().__init__(address, _Handler)
        self.registry = registry
        self.health = health

    def handle_error(self, request: object, client_address: object) -> None:
        """By type only; the default prints a traceback to stderr."""
        failure = type(sys.exc_info()[1]).__name__
        log.warning("observability request failed", extra={"error": failure})


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_PLAIN_0_0_4, generate_latest(self.server.registry))
        elif path == "/healthz":
            report = self.server.health.check()
            body = json.dumps(report.as_json(), indent=2, sort_keys=True).encode("utf-8")
            self._send(200 if report.ready else 503, "application/json", body)
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Route and status only, at DEBUG: a scraper calls every few seconds."""
        route = self.path.split("?", 1)[0]
        route = route if route in ("/metrics", "/healthz") else "other"
        status = str(args[1]) if len(args) > 1 else ""
        log.debug("observability request", extra={"route": route, "status": status})


class ObservabilityServer:
    """Serves ``/healthz`` and ``/metrics`` on ``host:port`` until ``stop``."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, health: HealthChecker
    ) -> None:
        self._address = (host, port)
        self._registry = registry
        self._health = health
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server (port 0 resolved to the real one)."""
        if self._server is None:
            raise ConfigError("observability server is not running", key="observability")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        """Bind and serve in a daemon thread.

        A failure to bind is a ConfigError naming ``[observability] port`` and the port, so
        the daemon stops at start-up (exit 2) instead of running on without ``/healthz``
        that its monitoring would then miss. A port in use is usually another daemon on
        this host: each needs a port of its own (``port = 0`` takes a free one).
        """
        host, port = self._address
        try:
            self._server = _Server(self._address, self._registry, self._health)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is already in use (another ehr-bridge daemon?):"
                    " stop what listens there, or set another [observability] port",
                    key="observability.port",
                ) from exc
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}): check [observability] port",
                key="observability.port",
            ) from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_SECONDS},
            name="observability-http",
            daemon=True,
        )
        self._thread.start()
        log.info("serving /healthz and /metrics", extra={"port": self._server.server_address[1]})

    def stop(self) -> None:
        """Stop serving and free the port; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
