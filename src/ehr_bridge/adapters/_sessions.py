"""One HTTP session per thread, for adapters whose writes push runs from several threads.

``requests.Session`` does not promise to be thread safe, and one session's connection pool
would also cap the writes at the trust at its pool size. So each thread gets its own twin
of the session the adapter was built with: the same TLS settings, limits, deadlines, proxy,
headers and authentication (an OAuth2 token cache is shared: it has its own lock), and any transport
a test or an embedding application mounted. The thread that built the adapter keeps the
original session, so code that reaches for it (tests, a single-threaded run) sees no change.
A session that is not a ``SecureSession`` (a caller's own fake) is shared as given.
"""

from __future__ import annotations

import threading

import requests
from requests.adapters import HTTPAdapter

from ehr_bridge.security.transport import SecureSession, WatchedAdapter


class PerThreadSession:
    """The session to use on the current thread."""

    def __init__(self, session: requests.Session) -> None:
        self.primary = session
        self._home = threading.get_ident()
        self._local = threading.local()

    def get(self) -> requests.Session:
        """The original on the building thread, else this thread's own twin of it."""
        if threading.get_ident() == self._home or not isinstance(self.primary, SecureSession):
            return self.primary
        twin: requests.Session | None = getattr(self._local, "session", None)
        if twin is None:
            twin = twin_of(self.primary)
            self._local.session = twin
        return twin


def twin_of(session: SecureSession) -> SecureSession:
    """A new session with the same security settings, deadlines, auth and custom transports.

    ``trust_env`` is not copied: a ``SecureSession`` never reads the environment.
    """
    twin = SecureSession(
        session.limits,
        verify=session.verify,
        connect_timeout=session.connect_timeout,
        read_timeout=session.read_timeout,
        proxy_url=session.proxy_url,
    )
    twin.cert = session.cert
    twin.auth = session.auth
    twin.headers.clear()
    twin.headers.update(session.headers)
    for prefix, adapter in session.adapters.items():
        if type(adapter) not in (HTTPAdapter, WatchedAdapter):  # a mounted transport: keep it
            twin.mount(prefix, adapter)
    return twin
