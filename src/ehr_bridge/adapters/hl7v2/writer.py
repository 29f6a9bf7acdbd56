"""TrustWriter: ORU^R01 and MDM^T02 sent over MLLP, or written to a folder.

HL7 v2 has no standard query for "do you hold the message with this control id?", so the
adapter does not declare ``find_by_reference`` and ``find`` answers None. Exactly-once in
effect rests on the receiver instead: a resent message carries the same MSH-10 (our client
reference), and a receiver that refuses a repeat with ``AE`` and error 205 (duplicate key)
is read as "already present". A folder is create-once by name, so a second write of the
same reference finds the first file and changes nothing.

A refusing ACK is foreign text: the error says which code we received (of HL7 tables 0008
and 0357 only), where (only a field our own message has) and a hash of the rest of the ACK,
never MSA-3 or ERR text, which a peer may fill with the patient's details.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

from ehr_bridge.adapters.base import WriteItem, WriteReceipt
from ehr_bridge.adapters.hl7v2 import ack, build
from ehr_bridge.adapters.hl7v2.mllp import MllpClient
from ehr_bridge.errors import TerminalError, TransientError
from ehr_bridge.security.files import open_private
from ehr_bridge.security.foreign_text import exception_name, reduce_reply

log = logging.getLogger(__name__)
_MAX_FIELD = 99  # the highest field number an error location may name


class Transport(Protocol):
    """Where built messages go."""

    def send(self, kind: str, control_id: str, message: str) -> WriteReceipt:
        """Deliver one message; the receipt's id is the control id."""
        ...


class MllpTransport:
    """Sends each message over MLLP and reads the peer's ACK."""

    def __init__(self, client: MllpClient) -> None:
        self.client = client

    def send(self, kind: str, control_id: str, message: str) -> WriteReceipt:
        """Send and interpret the ACK (AA written, AE 205 already there, AR later, AE never)."""
        reply = self.client.exchange(message.encode("utf-8"))
        answer = ack.parse_ack(reply.decode("utf-8", errors="replace"))
        if answer is None:
            raise TransientError("MLLP peer answered with something not an ACK", ambiguous=True)
        if answer.control_id != control_id:
            self.client.close()
            raise TransientError("MLLP peer acknowledged another message", ambiguous=True)
        detail = {"ack": answer.code}
        if answer.accepted:
            return WriteReceipt(trust_id=control_id, detail=detail)
        if answer.error_code == ack.DUPLICATE_KEY:
            return WriteReceipt(trust_id=control_id, already_present=True, detail=detail)
        text, known = _refusal(answer, message)
        if answer.rejected:
            raise TransientError(text)
        raise TerminalError(text, code=f"hl7_{known.lower()}" if known else "hl7_unknown")


def _refusal(answer: ack.Ack, message: str) -> tuple[str, str | None]:
    """What we may say of a refusing ACK, and its acknowledgement code if a known one."""
    known = answer.code if answer.code in ack.ACK_CODES else None
    reply = reduce_reply(
        f"peer answered {known or 'an unknown code'}",
        answer.text,
        code=answer.error_code,
        codes=ack.ERROR_CODES,
        field=answer.error_where,
        sent=_fields_of(message),
    )
    code = reply.code or ("unknown" if answer.error_code else "none")
    where = f" at {reply.field}" if reply.field else ""
    return f"{reply.status} (HL7 error {code}{where}){reply.reference}", known


def _fields_of(message: str) -> frozenset[str]:
    """``SEG`` and ``SEG-1`` to ``SEG-99`` of each segment our message has.

    The only locations an error may name: a field may be one we left empty (``PID-3``
    required), but the segment must be ours and the number small, so neither can carry
    a value the peer chose.
    """
    found: set[str] = set()
    for name in {segment[:3] for segment in message.split("\r") if segment[:3]}:
        found.add(name)
        found.update(f"{name}-{n}" for n in range(1, _MAX_FIELD + 1))
    return frozenset(found)


class FolderTransport:
    """Writes each message once as ``<kind>-<control id>.hl7`` for the trust's engine."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, kind: str, control_id: str, message: str) -> WriteReceipt:
        """Create the file atomically; an existing file for the reference is left alone."""
        final = self.folder / f"{kind}-{control_id}.hl7"
        if final.exists():
            return WriteReceipt(trust_id=control_id, already_present=True)
        temporary = self.folder / f".{final.name}.{os.getpid()}.tmp"
        try:
            with open_private(temporary, "wb") as handle:
                handle.write(message.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temporary, final)  # fails if another writer got there first
        except FileExistsError:
            return WriteReceipt(trust_id=control_id, already_present=True)
        except OSError as exc:
            raise TransientError(f"hl7 folder write failed: {exception_name(exc)}") from None
        finally:
            temporary.unlink(missing_ok=True)
        return WriteReceipt(trust_id=control_id)


class Hl7Writer:
    """Builds the message for an item's payload and hands it to the transport."""

    def __init__(self, header: build.Header, transport: Transport | None) -> None:
        self.header = header
        self.transport = transport

    def write(self, item: WriteItem) -> WriteReceipt:
        """Build and send one item; TerminalError for kinds or payloads we cannot send."""
        if self.transport is None:
            raise TerminalError("hl7v2 adapter has no send target configured", code="config")
        control_id, message = build.build(item.kind, item.payload, self.header)
        if control_id != item.client_reference:
            raise TerminalError(
                f"{item.kind} payload client_reference differs from the item's", code="payload"
            )
        receipt = self.transport.send(item.kind, control_id, message)
        log.info(
            "hl7 message sent",
            extra={"kind": item.kind, "already_present": receipt.already_present},
        )
        return receipt

    def find(self, item: WriteItem) -> WriteReceipt | None:
        """Always None: HL7 v2 peers cannot be asked (no ``find_by_reference``)."""
        return None
