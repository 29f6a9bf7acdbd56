"""An HTTP proxy on 127.0.0.1 that records every request it is asked to carry.

``RecordingProxy`` answers the proxy form of a request (``GET http://host:port/path``) by
forwarding it to that host, which must be a loopback address (nothing here ever contacts
another machine), and relaying the answer. A ``CONNECT`` is recorded and refused. Each
request is kept as ``Seen(method, target, headers)``, so a test can say what reached the
proxy, and whether a bearer token did.
"""

from __future__ import annotations

import http.client
import ipaddress
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "transfer-encoding"}


@dataclass(frozen=True)
class Seen:
    """One request the proxy received."""

    method: str
    target: str
    headers: dict[str, str]


class RecordingProxy:
    """A forwarding proxy for loopback targets; ``seen`` lists what it was asked to carry."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                proxy.seen.append(Seen(self.command, self.path, dict(self.headers.items())))
                target = urlsplit(self.path)
                if not target.hostname or not ipaddress.ip_address(target.hostname).is_loopback:
                    self.send_error(502)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                path = target.path + (f"?{target.query}" if target.query else "")
                upstream.request(self.command, path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP | {"content-length"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PUT = _forward

            def do_CONNECT(self) -> None:
                proxy.seen.append(Seen("CONNECT", self.path, dict(self.headers.items())))
                self.send_error(403)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: what a proxy variable or ``proxy_url`` names."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def tokens_seen(self) -> list[str]:
        """Every Authorization or Proxy-Authorization header value that reached the proxy."""
        return [
            value
            for seen in self.seen
            for name, value in seen.headers.items()
            if name.lower() in ("authorization", "proxy-authorization")
        ]

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
