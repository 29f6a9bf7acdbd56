"""Simulators of the systems ehr-bridge connects, for the demo, the tests and benchmarks.

``TrustSimulator`` is an IAPTUS-style trust record system over HTTP (``docs/trust-api.md``);
it, the PC-MIS-style ``sim.pcmis`` and the FHIR ``sim.fhir_server`` share one HTTP base
(``sim.http_base``). The provider's therapy platform simulator is ``sim.platform``.
"""

from __future__ import annotations

from ehr_bridge.sim.faults import Fault, FaultPlan
from ehr_bridge.sim.hostile import HOSTILE_FIELDS, HOSTILE_KINDS, HostileInfo
from ehr_bridge.sim.state import TrustState
from ehr_bridge.sim.trust import DEFAULT_TOKEN, TrustSimulator

__all__ = [
    "DEFAULT_TOKEN",
    "HOSTILE_FIELDS",
    "HOSTILE_KINDS",
    "Fault",
    "FaultPlan",
    "HostileInfo",
    "TrustSimulator",
    "TrustState",
]
