"""A PC-MIS-style trust record system: a second JSON dialect for the generic REST adapter.

It serves the same kind of synthetic caseload as the IAPTUS-style simulator, but with its
own field names, ``DD/MM/YYYY`` dates, local code lists, numbered pages with a total
count (and RFC 8288 ``Link`` headers), an ``X-API-Key`` header and integer item ids. ehr-bridge
connects to it with ``mappings/pcmis.yaml`` and the ``rest`` adapter: no Python of its own.
The API is described in ``docs/adding-an-ehr.md``.
"""

from __future__ import annotations

from ehr_bridge.sim.pcmis.server import API, KEY_HEADER
from ehr_bridge.sim.pcmis.simulator import DEFAULT_API_KEY, PcmisSimulator
from ehr_bridge.sim.pcmis.state import PcmisState

__all__ = ["API", "DEFAULT_API_KEY", "KEY_HEADER", "PcmisSimulator", "PcmisState"]
