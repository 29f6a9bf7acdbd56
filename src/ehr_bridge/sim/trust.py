"""The trust simulator's front door: generate a caseload, serve it, export it, stop it.

Tests and the demo start one in-process (``start`` on port 0 picks a free port); the CLI
runs it in the foreground with ``serve_forever``. Clients use ``<base>/api/v1``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any

from ehr_bridge.errors import ConfigError
from ehr_bridge.sim.generator import generate
from ehr_bridge.sim.records import REFERENCE_NOW, format_timestamp
from ehr_bridge.sim.server import SimServer
from ehr_bridge.sim.state import Clock, TrustState, utc_now

#: the simulator's well-known bearer token (a test fixture, not a secret)
DEFAULT_TOKEN = "sim-token"  # noqa: S105
#: how often the serving thread checks for ``stop``; short so tests do not wait on teardown
_POLL_SECONDS = 0.05


class TrustSimulator:
    """An IAPTUS-style trust record system on 127.0.0.1, deterministic by seed.

    Attributes:
        state: the records, for direct inspection and trust-side edits in tests.
        faults: switchable faults (off until a rule is added).
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        referrals: int = 50,
        hostile: int = 0,
        provider_code: str = "IESO01",
        token: str = DEFAULT_TOKEN,
        now: datetime | None = None,
        clock: Clock | None = None,
    ) -> None:
        reference = _checked(now, referrals, hostile, token)
        dataset = generate(
            seed=seed,
            referrals=referrals,
            hostile=hostile,
            provider_code=provider_code,
            now=reference,
        )
        meta = {"seed": seed, "provider_code": provider_code, "now": format_timestamp(reference)}
        self.state = TrustState(dataset, clock=clock or utc_now, factory=dataset.factory, meta=meta)
        self.faults = self.state.faults
        self.token = token
        self._server: SimServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server.

        Raises:
            ConfigError: the simulator is not serving.
        """
        if self._server is None:
            raise ConfigError("simulator is not running", key="sim")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        """The base URL trust clients are configured with: ``<base>/api/v1``."""
        return f"{self.base_url}/api/v1"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a daemon thread and return the base URL (port 0 picks a free port)."""
        self._bind(host, port)
        assert self._server is not None
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_SECONDS},
            name="trust-sim",
            daemon=True,
        )
        self._thread.start()
        return self.base_url

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

    def serve_forever(
        self, host: str, port: int, *, on_ready: Callable[[str], None] | None = None
    ) -> None:
        """Serve in the foreground until KeyboardInterrupt; ``on_ready`` gets the base URL."""
        self._bind(host, port)
        assert self._server is not None
        if on_ready is not None:
            on_ready(self.base_url)
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def export(self) -> dict[str, Any]:
        """The whole record system, the same document as ``GET /_sim/export``."""
        return self.state.export()

    def __enter__(self) -> TrustSimulator:
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

    def _bind(self, host: str, port: int) -> None:
        if self._server is not None:
            raise ConfigError("simulator is already running", key="sim")
        try:
            self._server = SimServer((host, port), self.state, self.token, self.faults)
        except OSError as exc:
            raise ConfigError(f"cannot listen on port {port}: {exc.strerror}", key="port") from exc


def _checked(now: datetime | None, referrals: int, hostile: int, token: str) -> datetime:
    """Refuse settings that would make a meaningless simulator, naming the setting."""
    if now is not None and now.tzinfo is None:
        raise ConfigError("must be timezone-aware", key="now")
    if referrals < 0:
        raise ConfigError("must be 0 or more", key="referrals")
    if hostile < 0:
        raise ConfigError("must be 0 or more", key="hostile")
    if not token:
        raise ConfigError("must not be empty", key="token")
    return now or REFERENCE_NOW
