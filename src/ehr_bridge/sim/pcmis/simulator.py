"""The PC-MIS-style simulator's front door: generate a caseload, serve it, stop it.

Tests start one in-process (``start`` on port 0 picks a free port); ``ehr-bridge sim
serve-pcmis`` runs it in the foreground. Clients use ``<base>/pcmis/api/v2`` with the key
in ``X-API-Key``.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from email.message import Message

from ehr_bridge.errors import ConfigError
from ehr_bridge.sim.faults import Fault, FaultPlan
from ehr_bridge.sim.http_base import SimulatorBase
from ehr_bridge.sim.pcmis.records import JsonDict
from ehr_bridge.sim.pcmis.server import API, DIALECT, KEY_HEADER, ROUTES
from ehr_bridge.sim.pcmis.state import PcmisState
from ehr_bridge.sim.records import REFERENCE_NOW, Clock, utc_now

#: the simulator's well-known API key (a test fixture, not a secret)
DEFAULT_API_KEY = "pcmis-sim-key"


class PcmisSimulator(SimulatorBase):
    """A PC-MIS-style record system on loopback, deterministic by seed.

    Attributes:
        state: the records, for direct inspection and edits in tests.
    """

    routes = ROUTES
    dialect = DIALECT
    api_path = API
    state: PcmisState
    token: str

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
        self.token = api_key
        self.faults = FaultPlan()

    def authorised(self, headers: Message) -> bool:
        """The key in ``X-API-Key``, compared in constant time."""
        given = headers.get(KEY_HEADER, "").strip()
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``count`` API requests with ``status`` (faults for adapter tests)."""
        self.faults.add(Fault("status", status=status, times=count, retry_after=retry_after))

    def export(self) -> JsonDict:
        """The whole record system (as ``GET /_sim/export`` answers)."""
        return self.state.export()
