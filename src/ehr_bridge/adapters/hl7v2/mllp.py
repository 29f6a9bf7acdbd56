"""MLLP framing and the sending side: one message out, one ACK back, on a kept connection.

A frame is ``<VT> message <FS><CR>``. The client keeps its connection between messages
(``keep_alive``) because most interface engines expect that, but many close it after every
ACK. So before each send it checks whether the peer has gone (a non-blocking peek), and if
a reused connection turns out dead without answering it reconnects and sends once more.
Sending twice is safe: receivers de-duplicate by MSH-10, which is our client reference.

Failures come out as ``TransientError``: ``ambiguous`` once the message may have left (the
peer might have stored it), so the engine never assumes a lost ACK means nothing happened.
A late ACK left on a connection is never mistaken for the next one: a timed-out
connection is closed, and a stray byte found before sending discards the connection.

``timeout`` is the whole exchange's deadline: connecting (at most ``connect_timeout`` of
it, ``send.connect_timeout_seconds``: a peer whose listener accepts nothing must not take
the whole deadline on every attempt), sending, a reconnect and resend, and the ACK,
however slowly the peer drips it. The exchange runs under ``ehr_bridge.retry.watched``, so
the flow run's deadline and the stop signal end it too (the watchdog shuts the socket
down); it then raises ``CallDeadlineError``, ``FlowDeadlineError`` or ``StoppedError``.
"""

from __future__ import annotations

import socket
import threading
import time

from ehr_bridge.errors import TransientError, UnreachableError
from ehr_bridge.retry import Watch, watched
from ehr_bridge.security.foreign_text import exception_name

START = b"\x0b"
END = b"\x1c\r"
MAX_FRAME_BYTES = 4 * 1024 * 1024
DEFAULT_CONNECT_TIMEOUT = 5.0


def frame(message: bytes) -> bytes:
    """``message`` wrapped for MLLP."""
    return START + message + END


class FrameReader:
    """Reads MLLP frames from a stream socket; bytes between frames are ignored."""

    def __init__(self, sock: socket.socket, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self.sock = sock
        self.max_bytes = max_bytes
        self.buffer = b""

    def next(self, deadline: float | None = None) -> bytes | None:
        """The next frame's content; None if the peer closed before a frame began.

        Raises:
            TimeoutError: ``deadline`` (a ``time.monotonic`` value) passed first.
            ConnectionError: the peer closed mid-frame or sent more than ``max_bytes``.
        """
        while True:
            start = self.buffer.find(START)
            end = self.buffer.find(END, start + 1) if start != -1 else -1
            if end != -1:
                content, self.buffer = self.buffer[start + 1 : end], self.buffer[end + 2 :]
                return content
            if len(self.buffer) > self.max_bytes:
                raise ConnectionError("frame larger than allowed")
            chunk = self._receive(deadline)
            if not chunk:
                if START in self.buffer:
                    raise ConnectionError("peer closed in the middle of a frame")
                return None
            self.buffer += chunk

    def _receive(self, deadline: float | None) -> bytes:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete frame in time")
            self.sock.settimeout(remaining)
        return self.sock.recv(65536)


class MllpClient:
    """Sends framed messages to one peer and returns each reply frame."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 10.0,
        keep_alive: bool = True,
        connect_timeout: float | None = None,
        key: str = "send",
    ) -> None:
        self.host = host
        self.port = port
        #: the config key of host and port, named when the peer cannot be reached
        self.key = key
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout or DEFAULT_CONNECT_TIMEOUT, timeout)
        self.keep_alive = keep_alive
        self._sock: socket.socket | None = None
        self._reader: FrameReader | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MllpClient({self.host}:{self.port}, keep_alive={self.keep_alive})"

    def exchange(self, message: bytes) -> bytes:
        """Send one message and return the content of the peer's answer frame."""
        with self._lock, watched(self.timeout, "MLLP send") as watch:
            for attempt in (1, 2):
                reused = self._usable()
                retry_allowed = reused and attempt == 1
                reply = self._send_once(
                    message, watch, retry_allowed=retry_allowed, resend=attempt > 1
                )
                if reply is not None:
                    if not self.keep_alive:
                        self.close()
                    return reply
        raise TransientError("MLLP peer closed the connection without an answer", ambiguous=True)

    def _send_once(
        self, message: bytes, watch: Watch, *, retry_allowed: bool, resend: bool
    ) -> bytes | None:
        """One send and its ACK; None when a reused connection died and a resend may follow.

        A ``resend`` ended by the watch is ambiguous even before it starts: the first copy
        may have reached the peer.
        """
        reader = self._connect(watch)
        sock = reader.sock
        watch.hold(lambda: sock.shutdown(socket.SHUT_RDWR))
        if watch.fired is not None or watch.remaining() == 0:
            self.close()
            raise watch.error("MLLP send", ambiguous=resend)
        try:
            sock.settimeout(watch.remaining() or 0.001)
            sock.sendall(frame(message))
            reply = reader.next(watch.deadline)
        except OSError as exc:  # TimeoutError and ConnectionError included
            self.close()
            if watch.fired is not None or watch.remaining() == 0:
                raise watch.error("MLLP send", ambiguous=True) from None
            if isinstance(exc, TimeoutError):
                raise TransientError("MLLP peer sent no answer in time", ambiguous=True) from None
            if retry_allowed:
                return None
            reason = f"MLLP send failed: {exception_name(exc)}"
            raise TransientError(reason, ambiguous=True) from None
        if reply is None:
            self.close()
            if watch.fired is not None:
                raise watch.error("MLLP send", ambiguous=True)
            if not retry_allowed:
                raise TransientError("MLLP peer closed without an answer", ambiguous=True)
        return reply

    def _usable(self) -> bool:
        """True if a kept connection is still open and clean; drops it otherwise."""
        if self._sock is None:
            return False
        self._sock.setblocking(False)
        try:
            self._sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True  # open, nothing waiting: the normal case
        except OSError:
            pass
        finally:
            if self._sock is not None:
                self._sock.settimeout(self.timeout)
        self.close()  # the peer closed it, or a stray late answer is waiting: start afresh
        return False

    def _connect(self, watch: Watch) -> FrameReader:
        if self._sock is None or self._reader is None:
            seconds = max(min(self.connect_timeout, watch.remaining()), 0.001)
            try:
                sock = socket.create_connection((self.host, self.port), timeout=seconds)
            except OSError as exc:
                if watch.fired is not None or watch.remaining() == 0:
                    raise watch.error("MLLP connect") from None
                raise UnreachableError(
                    f"MLLP connect failed: {exception_name(exc)}: the connection to"
                    f" {self.host}:{self.port} failed; check the network and {self.key}.host"
                    f" and {self.key}.port"
                ) from None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock, self._reader = sock, FrameReader(sock)
        return self._reader

    def close(self) -> None:
        """Drop the connection (the next exchange opens a new one)."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock, self._reader = None, None
