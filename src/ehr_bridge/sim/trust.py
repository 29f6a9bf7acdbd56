"""The trust simulator's front door: generate a caseload, serve it, export it, stop it.

Tests and the demo start one in-process (``start`` on port 0 picks a free port); the CLI
runs it in the foreground with ``serve_forever``. Clients use ``<base>/api/v1``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ehr_bridge.errors import ConfigError
from ehr_bridge.sim.generator import generate
from ehr_bridge.sim.http_base import SimulatorBase
from ehr_bridge.sim.records import REFERENCE_NOW, Clock, format_timestamp, utc_now
from ehr_bridge.sim.routes import API, ROUTES
from ehr_bridge.sim.server import DIALECT
from ehr_bridge.sim.state import TrustState

#: the simulator's well-known bearer token (a test fixture, not a secret)
DEFAULT_TOKEN = "sim-token"  # noqa: S105


class TrustSimulator(SimulatorBase):
    """An IAPTUS-style trust record system on 127.0.0.1, deterministic by seed.

    Attributes:
        state: the records, for direct inspection and trust-side edits in tests.
        faults: switchable faults (off until a rule is added).
    """

    routes = ROUTES
    dialect = DIALECT
    api_path = API
    state: TrustState
    token: str

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

    def export(self) -> dict[str, Any]:
        """The whole record system, the same document as ``GET /_sim/export``."""
        return self.state.export()


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
