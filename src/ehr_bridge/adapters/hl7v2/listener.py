"""The receiving side: an MLLP listener that stores each referral before it says AA.

``Receiver.handle`` decides the answer for one message and is plain code (tested without
sockets): it checks the envelope (readable text as ``er7`` reads it: MSH-18, MSH-2, every
line a segment, no control characters; an accepted MSH-9, MSH-10, the segments the message
type needs), writes the message durably into the drop folder
(``Inbox.accept``) and only then answers ``AA``. Everything else about the content (NHS
number, codes, dates) is the mapping's job at the next pull, where a bad referral is
quarantined with the field named: HL7's original-mode AA means "accepted for processing".

``MllpListener`` is the socket server around it: one thread per connection, any number
of messages per connection, idle connections closed after ``idle_timeout``.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Collection
from dataclasses import dataclass, field

from ehr_bridge.adapters.hl7v2 import ack
from ehr_bridge.adapters.hl7v2.ack import Incoming, Problem
from ehr_bridge.adapters.hl7v2.er7 import (
    Er7Error,
    decode_bytes,
    delimiters,
    split_messages,
    unescape,
)
from ehr_bridge.adapters.hl7v2.inbox import Inbox
from ehr_bridge.adapters.hl7v2.mllp import MAX_FRAME_BYTES, FrameReader, frame

log = logging.getLogger(__name__)

#: segments a message type must carry before we accept it
REQUIRED_SEGMENTS = {"REF": ("RF1", "PID")}


@dataclass
class Receiver:
    """Turns one received message into its ACK, storing it first when it is acceptable."""

    inbox: Inbox
    message_types: Collection[str] = ("REF^I12",)
    counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def handle(self, data: bytes) -> str:
        """The ACK text for ``data`` (one message without MLLP framing)."""
        incoming, problem = self._check(data)
        if problem is None:
            try:
                self.inbox.accept(data)
            except OSError as exc:
                log.error("hl7 message not stored", extra={"error": type(exc).__name__})
                problem = Problem(
                    ack.APPLICATION_INTERNAL_ERROR, "MSH", None, "not stored", reject=True
                )
        code = "AA" if problem is None else ("AR" if problem.reject else "AE")
        with self._lock:
            self.counts[code] = self.counts.get(code, 0) + 1
        log.info(
            "hl7 message answered",
            extra={"ack": code, "type": incoming.trigger, "where": problem and problem.where},
        )
        return ack.build_ack(incoming, problem)

    def _check(self, data: bytes) -> tuple[Incoming, Problem | None]:
        try:
            messages = split_messages(decode_bytes(data))
            segments = messages[0]
            incoming = _incoming(segments[0])
        except Er7Error as exc:
            return Incoming(), _unreadable(exc)
        if len(messages) > 1:
            text = "one message per frame"
            return incoming, Problem(ack.SEGMENT_SEQUENCE_ERROR, "MSH", None, text)
        return incoming, self._content(incoming, segments)

    def _content(self, incoming: Incoming, segments: list[str]) -> Problem | None:
        code, _, event = incoming.trigger.partition("^")
        accepted = [t.partition("^") for t in self.message_types]
        if not any(code == c for c, _, _ in accepted):
            text = "message type not accepted"
            return Problem(ack.UNSUPPORTED_MESSAGE_TYPE, "MSH", 9, text, reject=True)
        if not any(code == c and event == e for c, _, e in accepted):
            text = "trigger event not accepted"
            return Problem(ack.UNSUPPORTED_EVENT_CODE, "MSH", 9, text, reject=True)
        if not incoming.control_id:
            return Problem(ack.REQUIRED_FIELD_MISSING, "MSH", 10, "message control id missing")
        present = {s[:3] for s in segments}
        for required in REQUIRED_SEGMENTS.get(code, ()):
            if required not in present:
                return Problem(ack.SEGMENT_SEQUENCE_ERROR, required, None, "segment missing")
        return None


def _unreadable(exc: Er7Error) -> Problem:
    """The answer to text that is not a readable message, located as ERR-2 can say it."""
    if exc.where.startswith("line "):  # no segment to name: the line goes in the text
        return Problem(ack.SEGMENT_SEQUENCE_ERROR, "", None, f"{exc.where}: {exc.reason}")
    segment, _, number = exc.where.partition("-")
    where = int(number) if number.isdigit() else None
    return Problem(ack.REQUIRED_FIELD_MISSING, segment, where, exc.reason)


def _incoming(msh: str) -> Incoming:
    d = delimiters(msh)
    parts = msh.split(d.field)

    def part(number: int, component: int | None = 1) -> str:
        raw = parts[number - 1] if number - 1 < len(parts) else ""
        if component is None:
            return raw
        pieces = raw.split(d.component)
        return unescape(pieces[component - 1], d) if component - 1 < len(pieces) else ""

    message_type = part(9, None).split(d.component)
    trigger = "^".join(unescape(p, d) for p in message_type[:2] if p)
    return Incoming(
        sending_application=part(3),
        sending_facility=part(4),
        receiving_application=part(5),
        receiving_facility=part(6),
        trigger=trigger,
        control_id=part(10),
        processing_id=part(11) or "P",
        version=part(12) or "2.5",
    )


class _Handler(socketserver.BaseRequestHandler):
    server: MllpListener

    def handle(self) -> None:
        sock: socket.socket = self.request
        reader = FrameReader(sock, self.server.max_message_bytes)
        while not self.server.stopping.is_set():
            try:
                sock.settimeout(self.server.idle_timeout)
                message = reader.next()
            except OSError:
                return  # idle, reset, oversized or half a frame: drop the connection
            if message is None:
                return
            answer = self.server.receiver.handle(message)
            try:
                sock.sendall(frame(answer.encode("utf-8")))
            except OSError:
                return


class MllpListener(socketserver.ThreadingTCPServer):
    """Accepts MLLP connections and answers every message with its ACK."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        receiver: Receiver,
        *,
        idle_timeout: float = 60.0,
        max_message_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self.receiver = receiver
        self.idle_timeout = idle_timeout
        self.max_message_bytes = max_message_bytes
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return int(self.server_address[1])

    def start(self) -> MllpListener:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="hl7-mllp", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, let handlers finish their message, close the socket."""
        self.stopping.set()
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
