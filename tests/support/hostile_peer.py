"""A hostile peer on 127.0.0.1: it drips its answer a byte at a time, or never answers.

Plain sockets from the standard library, so nothing in it helps the client: a dripping
peer sends a well-formed answer, but so slowly that every socket timeout is reset by the
next byte and only a whole-request deadline can end the call; a hanging peer accepts,
reads the request and then says nothing at all.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from typing import Literal

Mode = Literal["drip", "hang"]

HTTP_END = b"\r\n\r\n"
MLLP_END = b"\x1c\r"


def http_answer(body: object) -> bytes:
    """A complete HTTP/1.1 200 answer with a JSON body."""
    data = json.dumps(body).encode("utf-8")
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + data


EMPTY_LISTING = http_answer({"items": [], "next_page_token": None})


class HostilePeer:
    """Accepts connections; answers each request in ``mode``.

    ``request_end`` marks the end of a request (the HTTP head, or an MLLP frame's end); an
    HTTP body announced by Content-Length is read too. ``byte_seconds`` is the gap between
    two bytes of a dripped answer.
    """

    def __init__(
        self,
        mode: Mode,
        answer: bytes = EMPTY_LISTING,
        *,
        request_end: bytes = HTTP_END,
        byte_seconds: float = 1.0,
    ) -> None:
        self.mode = mode
        self.answer = answer
        self.request_end = request_end
        self.byte_seconds = byte_seconds
        #: requests read so far (a request in flight counts once its end is read)
        self.requests = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._clients: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(32)
        self.port: int = self._listener.getsockname()[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HostilePeer:
        """Serve in daemon threads."""
        threading.Thread(target=self._accept, name="hostile-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection."""
        self._stop.set()
        self._listener.close()
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(OSError):
                client.close()

    def __enter__(self) -> HostilePeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._clients.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                if not self._read_request(client):
                    return
                with self._lock:
                    self.requests += 1
                if self.mode == "hang":
                    self._stop.wait()
                    return
                for byte in self.answer:
                    if self._stop.wait(self.byte_seconds):
                        return
                    client.sendall(bytes([byte]))
        except OSError:
            return

    def _read_request(self, client: socket.socket) -> bool:
        data = b""
        while self.request_end not in data:
            chunk = client.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, rest = data.partition(self.request_end)
        length = _content_length(head) if self.request_end == HTTP_END else 0
        while len(rest) < length:
            chunk = client.recv(65536)
            if not chunk:
                return False
            rest += chunk
        return True


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return 0
