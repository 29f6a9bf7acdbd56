"""The PC-MIS-style simulator's front door: generate a caseload, serve it, stop it.

Tests start one in-process (``start`` on port 0 picks a free port); ``ehr-bridge sim
serve-pcmis`` runs it in the foreground. Clients use ``<base>/pcmis/api/v2`` with the key
in ``X-API-Key``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from types import TracebackType

from ehr_bridge.errors import ConfigError
from ehr_bridge.sim.pcmis.records import JsonDict
from ehr_bridge.sim.pcmis.server import API, Answer, PcmisServer, error
from ehr_bridge.sim.pcmis.state import PcmisState
from ehr_bridge.sim.records import REFERENCE_NOW
from ehr_bridge.sim.state import Clock, utc_now

#: the simulator's well-known API key (a test fixture, not a secret)
DEFAULT_API_KEY = "pcmis-sim-key"
_POLL_SECONDS = 0.05


class PcmisSimulator:
    """A PC-MIS-style record system on loopback, deterministic by seed.

    Attributes:
        state: the records, for direct inspection and edits in tests.
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        referrals: int = 20,
        hostile: int = 0,
        provider_code: str = "IESO01",
        api_key: str = DEFAULT_API_KEY,
        now: datetime = REFERENCE_NOW,
        clock: Clock = utc_now,
    ) -> None:
        if referrals < 0 or hostile < 0:
            raise ConfigError("must be 0 or more", key="referrals" if referrals < 0 else "hostile")
        if not api_key:
            raise ConfigError("must not be empty", key="api_key")
        self.state = PcmisState(
            seed=seed,
            referrals=referrals,
            hostile_count=hostile,
            provider_code=provider_code,
            now=now,
            clock=clock,
        )
        self.api_key = api_key
        self._server: PcmisServer | None = None
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
        """What a connection's ``base_url`` is set to: ``<base>/pcmis/api/v2``."""
        return f"{self.base_url}{API}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a daemon thread; return the base URL (port 0 picks a free port)."""
        server = self._bind(host, port)
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_SECONDS},
            name="pcmis-sim",
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

    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``count`` API requests with ``status`` (faults for adapter tests)."""
        if self._server is None:
            raise ConfigError("simulator is not running", key="sim")
        answer = error(status, "UNAVAILABLE", "simulated fault")
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        self._server.fail_next(Answer(answer.status, answer.body, headers), count)

    def export(self) -> JsonDict:
        """The whole record system (as ``GET /_sim/export`` answers)."""
        return self.state.export()

    def __enter__(self) -> PcmisSimulator:
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

    def _bind(self, host: str, port: int) -> PcmisServer:
        if self._server is not None:
            raise ConfigError("simulator is already running", key="sim")
        try:
            self._server = PcmisServer((host, port), self.state, self.api_key)
        except OSError as exc:
            raise ConfigError(f"cannot listen on port {port}: {exc.strerror}", key="port") from exc
        return self._server
