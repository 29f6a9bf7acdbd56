"""HL7 v2 trust adapter: REF^I12 in (drop folder, MLLP), ORU^R01 and MDM^T02 out.

See ``docs/hl7v2.md``. The read path (``er7``, ``record``) is a small splitter of our own,
fast enough for a trust backfill; hl7apy builds the outbound messages and supplies the
data dictionary that says which components are dates.
"""

from ehr_bridge.adapters.hl7v2.adapter import Hl7v2Adapter, Hl7v2Options, create
from ehr_bridge.adapters.hl7v2.er7 import Er7Error, escape, split_messages, unescape
from ehr_bridge.adapters.hl7v2.listener import MllpListener, Receiver
from ehr_bridge.adapters.hl7v2.record import decode

__all__ = [
    "Er7Error",
    "Hl7v2Adapter",
    "Hl7v2Options",
    "MllpListener",
    "Receiver",
    "create",
    "decode",
    "escape",
    "split_messages",
    "unescape",
]
