"""The HTTP session every network adapter uses: TLS always verified, mTLS, OAuth2, limits.

``build_session`` turns an adapter's ``tls``, ``oauth2`` and ``limits`` tables into a
``SecureSession``:

- **TLS** is always verified. The one knob is ``tls.ca_bundle`` (a PEM file for a trust's
  own CA); ``verify=False`` passed by any caller and ``REQUESTS_CA_BUNDLE`` are ignored.
  ``tls.client_cert_file`` and ``tls.client_key_file`` give mutual TLS.
- **Plain http** is accepted only to this machine (the simulators, a local TLS proxy).
- **OAuth2 client credentials** (``oauth2`` table): the token is fetched on first use,
  cached, refreshed ``refresh_margin_seconds`` before it expires, and a 401 answer fetches a
  new token and sends the request once more. The client secret is read by reference
  (``client_secret_env`` or ``client_secret_file``) like every other secret.
- **Redirects are never followed**: the bearer token must only go where the config says.
- **No proxy from the environment**: ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and
  ``NO_PROXY`` (any case) are ignored, and so is ``~/.netrc`` (``trust_env`` is off): what a
  shell or a unit file happens to export must not route the bearer token through another
  host. The one proxy is the config's ``proxy_url``, used for http and https alike.
- **Every answer is read through the input limits** (size, compression, JSON depth).
- **Deadlines**: a connect deadline (``connect_timeout_seconds``), a read deadline (the
  longest silence, ``read_timeout_seconds``) and a whole-request deadline (the caller's
  ``timeout``, the adapter's ``timeout_seconds``) covering connect, headers and body. The
  socket timeouts alone cannot stop a peer that sends a byte a second, so each request runs
  under ``ehr_bridge.retry.watched``: a watchdog shuts the request's socket down when the
  whole-request deadline or the flow run's deadline passes, or soon after stop is set, and
  the request ends with ``CallDeadlineError``, ``FlowDeadlineError`` or ``StoppedError``
  (``ambiguous`` for anything but GET and HEAD: a write may have landed).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import requests
import urllib3
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ehr_bridge.config import Secret, check_proxy_url, read_secret
from ehr_bridge.errors import ConfigError, ConnectionStopError, TransientError
from ehr_bridge.retry import Watch, watched
from ehr_bridge.security.files import warn_if_shared
from ehr_bridge.security.foreign_text import known_code
from ehr_bridge.security.limits import InputLimitError, InputLimits, read_limited

#: RFC 6749 section 5.2 token endpoint error codes: the only ones repeated from an answer
OAUTH2_ERROR_CODES = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)
_DEFAULT_LIFETIME = 300.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 10.0
#: the whole-request deadline of a caller that names none
DEFAULT_TOTAL_TIMEOUT = 30.0
_SAFE_METHODS = frozenset({"GET", "HEAD"})


class TlsOptions(BaseModel):
    """``[connection.trust.tls]``: the CA bundle and the client certificate for mutual TLS."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ca_bundle: str | None = Field(default=None, description="PEM CA bundle; default: certifi")
    client_cert_file: str | None = None
    client_key_file: str | None = None

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsOptions:
        if bool(self.client_cert_file) != bool(self.client_key_file):
            raise ValueError("mutual TLS needs both client_cert_file and client_key_file")
        return self


class OAuth2Options(BaseModel):
    """``[connection.trust.oauth2]``: the client-credentials grant (RFC 6749 section 4.4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    token_url: str = Field(pattern=r"^https?://")
    client_id: str = Field(min_length=1)
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    scope: str | None = None
    #: how the client authenticates to the token endpoint: HTTP Basic or form fields
    client_auth: Literal["basic", "post"] = "basic"
    refresh_margin_seconds: float = Field(default=60, ge=0)
    timeout_seconds: float = Field(default=15, gt=0)


class TransportOptions(BaseModel):
    """The tables every network adapter's options take (inherit this)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tls: TlsOptions = TlsOptions()
    oauth2: OAuth2Options | None = None
    limits: InputLimits = InputLimits()
    #: longest wait for the TCP and TLS handshake (capped by the whole-request deadline)
    connect_timeout_seconds: float = Field(default=DEFAULT_CONNECT_TIMEOUT, gt=0, le=300)
    #: longest silence while waiting for the answer's next bytes (capped likewise)
    read_timeout_seconds: float = Field(default=DEFAULT_READ_TIMEOUT, gt=0, le=3600)
    #: the HTTP proxy for every request of the adapter (https goes through it by CONNECT);
    #: none by default, whatever the environment says
    proxy_url: Annotated[str | None, AfterValidator(check_proxy_url)] = None


def require_secure_proxy(proxy_url: str | None, target: str, key: str) -> None:
    """Refuse a proxy elsewhere for plain http: it would carry the token off the machine in clear.

    Through a proxy, https is a CONNECT tunnel (TLS stays end to end); plain http is sent to
    the proxy as it is, so a loopback-only http target may only use a loopback proxy.
    """
    if proxy_url is None or urlsplit(target).scheme != "http":
        return
    if not _is_loopback(urlsplit(proxy_url).hostname):
        raise ConfigError(
            "plain http may only go through a proxy on this machine (use https)", key=key
        )


def require_secure_url(url: str, key: str) -> None:
    """Refuse a URL without TLS, except plain http to a loopback address."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        return
    raise ConfigError("use https (plain http is accepted only to this machine)", key=key)


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _CurrentWatch(threading.local):
    watch: Watch | None = None


_CURRENT = _CurrentWatch()


def _shut_down(connection: object) -> None:
    """Wake a thread blocked on this connection's socket (connecting, sending or reading)."""
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, under any TLS


class _WatchedPool(HTTPConnectionPool):
    """A pool whose connections are handed to the watch of the request taking them."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        watch = _CURRENT.watch
        if watch is not None:
            watch.hold(lambda: _shut_down(conn))
        return conn


class _WatchedHttpsPool(_WatchedPool, HTTPSConnectionPool):
    pass


_WATCHED_POOLS = {"http": _WatchedPool, "https": _WatchedHttpsPool}


class WatchedAdapter(HTTPAdapter):
    """The transport ``SecureSession`` mounts: requests' own, with watched connection pools."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Requests' pool manager, building watched pools."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_WATCHED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """Requests' proxy manager, building watched pools."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_WATCHED_POOLS)
        return manager


class SecureSession(requests.Session):
    """A ``requests.Session`` that verifies TLS, follows no redirect and bounds every answer.

    ``timeout`` given to a request is its whole-request deadline; ``connect_timeout`` and
    ``read_timeout`` bound the handshake and each silence within it. ``proxy_url`` is the
    only proxy it ever uses: the environment's are ignored, and so is a caller's.
    """

    def __init__(
        self,
        limits: InputLimits | None = None,
        *,
        verify: str | bool = True,
        cert: tuple[str, str] | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        proxy_url: str | None = None,
    ) -> None:
        super().__init__()
        self.trust_env = False  # no proxy variables, no ~/.netrc credentials, no CA variables
        self.proxy_url = proxy_url
        self.proxies = {"http": proxy_url, "https": proxy_url} if proxy_url else {}
        self.limits = limits or InputLimits()
        self.verify: str | bool = verify if verify is not False else True
        self.cert = cert
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.headers["Accept-Encoding"] = "gzip, deflate"
        self.mount("https://", WatchedAdapter())
        self.mount("http://", WatchedAdapter())

    def __repr__(self) -> str:
        return f"SecureSession(verify={self.verify!r}, mutual_tls={self.cert is not None})"

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send through the transport adapter directly: no redirects, TLS settings forced."""
        response = self._send_once(request, kwargs)
        if response.status_code == 401 and isinstance(self.auth, OAuth2ClientCredentials):
            response.close()
            self.auth.invalidate()
            retry = self.auth(request.copy())
            response = self._send_once(retry, kwargs)
        return response

    def _send_once(
        self, request: requests.PreparedRequest, kwargs: Mapping[str, Any]
    ) -> requests.Response:
        """One request and its whole body under a watch, every deadline applied."""
        method = str(request.method or "GET").upper()
        what = f"{method} {_host(str(request.url))}"
        total = _total(kwargs.get("timeout"))
        adapter = self.get_adapter(url=str(request.url))
        with watched(total, what) as watch:
            outer, _CURRENT.watch = _CURRENT.watch, watch
            try:
                response = adapter.send(
                    request,
                    stream=True,
                    timeout=self._socket_timeouts(watch),
                    verify=self.verify,
                    cert=self.cert,
                    proxies=dict(self.proxies),
                )
                self._read_body(request, response, watch)
            except Exception:
                if watch.fired is None and watch.remaining() > 0:
                    raise
                # the watchdog ended it (or its time ran out between two reads)
                raise watch.error(what, ambiguous=method not in _SAFE_METHODS) from None
            finally:
                _CURRENT.watch = outer
        return response

    def _socket_timeouts(self, watch: Watch) -> tuple[float, float]:
        """(connect, read) socket timeouts, never past the whole-request deadline."""
        left = max(watch.remaining(), 0.001)
        return min(self.connect_timeout, left), min(self.read_timeout, left)

    def _read_body(
        self, request: requests.PreparedRequest, response: requests.Response, watch: Watch
    ) -> None:
        what = f"{request.method} answer from {_host(str(request.url))}"
        try:
            response._content = read_limited(
                response.raw, response.headers, self.limits, what, check=watch.check
            )
        except InputLimitError as exc:
            if request.method in _SAFE_METHODS:
                raise
            # the write may have been committed: the next attempt reads before it writes
            raise TransientError(exc.safe_message, ambiguous=True) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # what requests itself raises for a broken body, so adapters translate it as usual
            raise requests.exceptions.ChunkedEncodingError(type(exc).__name__) from None
        finally:
            response.close()


def _host(url: str) -> str:
    """``host:port`` of a URL for messages: never a user or password written in it."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


def _total(timeout: object) -> float:
    """The whole-request deadline a caller gave (seconds; a (connect, read) pair: its sum)."""
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
        return float(timeout)
    if isinstance(timeout, tuple) and all(isinstance(t, int | float) for t in timeout):
        return float(sum(timeout))
    return DEFAULT_TOTAL_TIMEOUT


class OAuth2ClientCredentials(requests.auth.AuthBase):
    """Bearer tokens from a client-credentials grant, cached until shortly before expiry."""

    def __init__(
        self,
        options: OAuth2Options,
        secret: Secret,
        http: requests.Session,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self._secret = secret
        self._http = http
        self._clock = clock
        self._lock = threading.Lock()
        self._token: Secret | None = None
        self._refresh_at = 0.0
        #: how many tokens were fetched (for tests and the status of a connection)
        self.fetched = 0

    def __repr__(self) -> str:
        url = self.options.token_url
        return f"OAuth2ClientCredentials(token_url={url!r}, secret={self._secret!r})"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        """Put the current bearer token on the request."""
        r.headers["Authorization"] = f"Bearer {self.token().reveal()}"
        return r

    def token(self) -> Secret:
        """The cached token, or a new one when none is cached or it is about to expire."""
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._token, lifetime = self._fetch()
                margin = min(self.options.refresh_margin_seconds, lifetime / 2)
                self._refresh_at = self._clock() + lifetime - margin
                self.fetched += 1
            return self._token

    def invalidate(self) -> None:
        """Forget the token (the server refused it), so the next request fetches another."""
        with self._lock:
            self._token = None

    def _fetch(self) -> tuple[Secret, float]:
        data = {"grant_type": "client_credentials"}
        if self.options.scope:
            data["scope"] = self.options.scope
        auth: tuple[str, str] | None = (self.options.client_id, self._secret.reveal())
        if self.options.client_auth == "post":
            data.update(client_id=self.options.client_id, client_secret=self._secret.reveal())
            auth = None
        try:
            response = self._http.post(
                self.options.token_url,
                data=data,
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=self.options.timeout_seconds,
            )
        except requests.RequestException as exc:
            raise TransientError(f"oauth2 token: {type(exc).__name__}") from None
        return _token_from(response)


def _token_from(response: requests.Response) -> tuple[Secret, float]:
    """The token and its lifetime in seconds, or the error the answer stands for."""
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    status = response.status_code
    if status == 429 or status >= 500:
        raise TransientError(f"oauth2 token: HTTP {status}")
    error = known_code(body.get("error"), OAUTH2_ERROR_CODES)
    named = f" {error}" if error else ""
    if status >= 300:
        raise ConnectionStopError(f"oauth2 token: HTTP {status}{named}")
    token, kind = body.get("access_token"), body.get("token_type", "Bearer")
    if not isinstance(token, str) or not token or str(kind).lower() != "bearer":
        raise ConnectionStopError("oauth2 token: the answer has no bearer access_token")
    lifetime = body.get("expires_in")
    if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) and lifetime > 0:
        return Secret(token), min(float(lifetime), 86400.0)
    return Secret(token), _DEFAULT_LIFETIME


def build_session(
    options: TransportOptions,
    raw: Mapping[str, Any],
    *,
    base_url: str,
    base_dir: Path,
    key: str,
    clock: Callable[[], float] = time.monotonic,
) -> SecureSession:
    """The session for one adapter, checked at start-up; every problem names its key.

    ``raw`` is the adapter's option table as written (the secret references live there).
    """
    require_secure_url(base_url, f"{key}.base_url")
    require_secure_proxy(options.proxy_url, base_url, f"{key}.proxy_url")
    if options.oauth2 is not None and (raw.get("token_env") or raw.get("token_file")):
        raise ConfigError("use the oauth2 table or a static token, not both", key=f"{key}.oauth2")
    tls = options.tls
    verify: str | bool = True
    if tls.ca_bundle:
        verify = _path(tls.ca_bundle, base_dir, f"{key}.tls.ca_bundle")
    cert = None
    if tls.client_cert_file and tls.client_key_file:
        cert = (
            _path(tls.client_cert_file, base_dir, f"{key}.tls.client_cert_file"),
            _path(tls.client_key_file, base_dir, f"{key}.tls.client_key_file"),
        )
    _warn_if_key_files_shared(options, raw, base_dir, key)
    settings: dict[str, Any] = {
        "connect_timeout": options.connect_timeout_seconds,
        "read_timeout": options.read_timeout_seconds,
        "proxy_url": options.proxy_url,
    }
    session = SecureSession(options.limits, verify=verify, cert=cert, **settings)
    if options.oauth2 is not None:
        where = f"{key}.oauth2"
        require_secure_url(options.oauth2.token_url, f"{where}.token_url")
        require_secure_proxy(options.proxy_url, options.oauth2.token_url, f"{key}.proxy_url")
        table = dict(raw.get("oauth2") or {})
        secret = read_secret(table, "client_secret", base_dir=base_dir, key=where)
        token_http = SecureSession(options.limits, verify=verify, cert=cert, **settings)
        session.auth = OAuth2ClientCredentials(options.oauth2, secret, token_http, clock=clock)
    return session


def _warn_if_key_files_shared(
    options: TransportOptions, raw: Mapping[str, Any], base_dir: Path, key: str
) -> None:
    """Name every secret file of the adapter that other users may read (the path only)."""
    oauth2 = raw.get("oauth2")
    files = {
        f"{key}.tls.client_key_file": options.tls.client_key_file,
        f"{key}.token_file": raw.get("token_file"),
        f"{key}.oauth2.client_secret_file": (
            oauth2.get("client_secret_file") if isinstance(oauth2, Mapping) else None
        ),
    }
    for where, name in files.items():
        if isinstance(name, str) and name:
            path = Path(name)
            warn_if_shared(path if path.is_absolute() else base_dir / path, where)


def _path(value: str, base_dir: Path, key: str) -> str:
    """A file named in the config, relative to the config's folder, that must exist."""
    path = Path(value)
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise ConfigError(f"file not found: {path}", key=key)
    return str(path)
