"""Acknowledgements: the ACK our listener answers, and reading the ACK a peer answers us.

Original-mode codes (HL7 table 0008), with the enhanced-mode commit codes read alike:

- ``AA``/``CA``: accepted. Our listener says it only once the message is on disk.
- ``AE``/``CE``: the message has an error; sending it again unchanged will not help.
- ``AR``/``CR``: rejected for reasons outside the content (unsupported type or version,
  receiver down); worth sending again later.

Error details go in an ERR segment (2.5 layout: ERR-2 location, ERR-3 code from table
0357, ERR-4 severity) and in MSA-3 for older readers. They name segments, fields and
codes only, never a value from the message. ACKs are assembled here with ``er7`` rather
than hl7apy: they are three fixed segments and must go out while the sender waits.

A peer's ACK is foreign text: ``parse_ack`` reads its codes and location, and keeps the
rest (MSA-3 onwards, ERR, any other segment but MSH) only to be hashed; the writer lets
through only codes of ``ACK_CODES`` and ``ERROR_CODES`` and a location of its own message.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ehr_bridge.adapters.hl7v2 import er7
from ehr_bridge.adapters.hl7v2.dates import hl7_timestamp
from ehr_bridge.adapters.hl7v2.er7 import Er7Error

#: HL7 table 0357 codes we use
SEGMENT_SEQUENCE_ERROR = "100"
REQUIRED_FIELD_MISSING = "101"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
DUPLICATE_KEY = "205"
APPLICATION_INTERNAL_ERROR = "207"
#: HL7 table 0008 acknowledgement codes
ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})
#: HL7 table 0357 message error condition codes (2.5; 104 from 2.6)
ERROR_CODES = frozenset(
    {"0", "100", "101", "102", "103", "104", "200", "201", "202", "203", "204", "205", "206", "207"}
)
_TEXTS = {
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    DUPLICATE_KEY: "Duplicate key identifier",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
}


@dataclass(frozen=True)
class Problem:
    """Why a message is not accepted: where (``PID-3``), the 0357 code and a short text."""

    code: str
    segment: str
    field: int | None
    text: str
    reject: bool = False  # AR (outside the content) rather than AE

    @property
    def where(self) -> str:
        """``SEG-n`` or just ``SEG``."""
        return f"{self.segment}-{self.field}" if self.field else self.segment


@dataclass(frozen=True)
class Ack:
    """What a peer answered."""

    code: str  # MSA-1
    control_id: str  # MSA-2: the message it acknowledges
    error_code: str | None = None  # ERR-3.1 (or ERR-1.4.1 in 2.3/2.4 style)
    error_where: str | None = None  # ERR-2 as SEG-n
    #: MSA-3 onwards, ERR and other segments but MSH, as sent: foreign text, to hash only
    #: (left out of ``repr`` and of comparisons: an Ack is its codes)
    text: str = field(default="", repr=False, compare=False)

    @property
    def accepted(self) -> bool:
        """AA or CA."""
        return self.code in ("AA", "CA")

    @property
    def rejected(self) -> bool:
        """AR or CR: not about the content; may be sent again later."""
        return self.code in ("AR", "CR")


@dataclass(frozen=True)
class Incoming:
    """The header fields of a received message that an ACK echoes."""

    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    trigger: str = ""  # MSH-9 code^event, e.g. REF^I12
    control_id: str = ""
    processing_id: str = "P"
    version: str = "2.5"


def build_ack(incoming: Incoming, problem: Problem | None = None) -> str:
    """The ACK for ``incoming``: AA without a problem, else AE or AR with an ERR segment."""
    e = er7.escape
    code = "AA" if problem is None else ("AR" if problem.reject else "AE")
    event = incoming.trigger.rpartition("^")[2]
    msh = er7.header(
        [
            e(incoming.receiving_application or "EHR-BRIDGE"),
            e(incoming.receiving_facility),
            e(incoming.sending_application),
            e(incoming.sending_facility),
            hl7_timestamp(datetime.now(UTC)),
            "",
            f"ACK^{e(event)}^ACK" if event else "ACK",
            uuid.uuid4().hex[:20],
            e(incoming.processing_id or "P"),
            e(incoming.version or "2.5"),
        ]
    )
    text = e(problem.text) if problem else ""
    segments = [msh, er7.segment("MSA", [code, e(incoming.control_id), text])]
    if problem is not None:
        location = f"{problem.segment}^1^{problem.field}" if problem.field else problem.segment
        reason = f"{problem.code}^{e(_TEXTS.get(problem.code, ''))}^HL70357"
        segments.append(er7.segment("ERR", ["", location, reason, "E"]))
    return "\r".join(segments) + "\r"


def parse_ack(text: str) -> Ack | None:
    """The MSA (and ERR) of a peer's answer, or None when it is not an ACK at all."""
    try:
        (message,) = er7.split_messages(text)[:1]
        d = er7.delimiters(message[0])
    except (Er7Error, ValueError):
        return None
    fields = {s[:3]: s.split(d.field) for s in reversed(message)}
    msa = fields.get("MSA")
    if msa is None or len(msa) < 3 or not msa[1]:
        return None
    code = msa[1].split(d.component)[0].strip().upper()
    error_code, where = _error(fields.get("ERR"), d)
    rest = [d.field.join(msa[3:])] + [s for s in message if s[:3] not in ("MSH", "MSA")]
    control_id = er7.unescape(msa[2].split(d.component)[0], d)
    return Ack(code, control_id, error_code, where, "\r".join(rest).strip("\r"))


def _error(err: list[str] | None, d: er7.Delimiters) -> tuple[str | None, str | None]:
    if err is None:
        return None, None
    if len(err) > 3 and err[3]:  # 2.5+: ERR-3 HL7 error code, ERR-2 location
        location = err[2].split(d.component) if len(err) > 2 else []
        where = f"{location[0]}-{location[2]}" if len(location) > 2 and location[2] else None
        return err[3].split(d.component)[0], where
    if len(err) > 1 and err[1]:  # 2.3/2.4: ERR-1 is ELD, segment^sequence^field^code
        parts = err[1].split(d.component)
        code = parts[3].split(d.subcomponent)[0] if len(parts) > 3 else None
        where = f"{parts[0]}-{parts[2]}" if len(parts) > 2 and parts[2] else None
        return code or None, where
    return None, None
