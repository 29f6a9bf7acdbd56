"""TrustWriter: ORU^R01 and MDM^T02 sent over MLLP, or written to a folder.

HL7 v2 has no standard query for "do you hold the message with this control id?", so the
adapter does not declare ``find_by_reference`` and ``find`` answers None. Exactly-once in
effect rests on the receiver instead: a resent message carries the same MSH-10 (our client
reference), and a receiver that refuses a repeat with ``AE`` and error 205 (duplicate key)
is read as "already present". A folder is create-once by name, so a second write of the
same reference finds the first file and changes nothing.
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

log = logging.getLogger(__name__)


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
        where = f" at {answer.error_where}" if answer.error_where else ""
        text = f"peer answered {answer.code} (HL7 error {answer.error_code or 'none'}{where})"
        if answer.rejected:
            raise TransientError(text)
        raise TerminalError(text, code=f"hl7_{answer.code.lower()}")


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
            with open(temporary, "wb") as handle:
                handle.write(message.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temporary, final)  # fails if another writer got there first
        except FileExistsError:
            return WriteReceipt(trust_id=control_id, already_present=True)
        except OSError as exc:
            raise TransientError(f"hl7 folder write failed: {type(exc).__name__}") from None
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
