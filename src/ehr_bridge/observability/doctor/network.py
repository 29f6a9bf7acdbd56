"""TLS trust and reachability: one cheap authenticated read of each side, on a short deadline.

A REST, IAPTUS-style or FHIR trust is asked for its referral listing with a page of one,
changed since now (so nothing of a patient's comes back), read once, not retried; a FHIR
provider for its session Bundles the same way; an HL7 v2 peer gets a TCP connect and
nothing else. What goes wrong is told by what the adapter raised: credentials refused
(``ConnectionStopError``), TLS not trusted, no connection or no answer in time, the API
failing. Messages are the adapters' own safe ones, so no answer body is ever printed.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import ValidationError

from ehr_bridge.adapters.fhir import FhirHttp, FhirProviderOptions
from ehr_bridge.adapters.hl7v2 import Hl7v2Options
from ehr_bridge.adapters.registry import create_adapter
from ehr_bridge.config import AdapterConfig, read_secret
from ehr_bridge.errors import (
    CallDeadlineError,
    ConfigError,
    ConnectionStopError,
    EhrBridgeError,
    TerminalError,
    TransientError,
)
from ehr_bridge.mapping import Mapping as MappingFile
from ehr_bridge.observability.doctor.model import Findings
from ehr_bridge.observability.doctor.secrets import private_or_warn, quiet
from ehr_bridge.security.keyring import resolve
from ehr_bridge.security.transport import build_session

#: trust adapters answering ``fetch_referrals`` over HTTP, with a ``page_size`` option
HTTP_TRUSTS = frozenset({"iaptus", "rest", "fhir"})
DEFAULT_TIMEOUT = 5.0
_TIMEOUTS = ("timeout_seconds", "connect_timeout_seconds", "read_timeout_seconds")


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (plain http is allowed only there)."""
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(url: str) -> str:
    """``host:port`` of a URL, never a user or password written in it."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname or '?'}{f':{port}' if port else ''}"


def check_tls(
    found: Findings, side: str, options: Mapping[str, Any], *, base_dir: Path, key: str
) -> None:
    """The ``tls`` check: https (or http to this machine), a CA bundle and client cert that load."""
    base_url = options.get("base_url")
    if not isinstance(base_url, str):
        return
    parts, host = urlsplit(base_url), host_of(base_url)
    if parts.scheme != "https":
        if parts.scheme == "http" and is_loopback(parts.hostname):
            found.passed(
                "tls",
                f"{side} {host}: plain http to this machine (a simulator or a local TLS proxy)",
            )
        else:
            found.fail("tls", f"{side} {key}.base_url is not https ({host})", "use https")
        return
    table = options.get("tls")
    tls: Mapping[str, Any] = table if isinstance(table, Mapping) else {}
    ca = tls.get("ca_bundle")
    context = _context(found, side, resolve(str(ca), base_dir) if ca else None, key)
    if context is None:
        return
    cert, private_key = tls.get("client_cert_file"), tls.get("client_key_file")
    if cert and private_key:
        cert_path, key_path = resolve(str(cert), base_dir), resolve(str(private_key), base_dir)
        if not _client_cert(found, side, context, cert_path, key_path, key):
            return
        private_or_warn(found, "tls", key_path, f"{key}.tls.client_key_file")
    trusted = f"the CA bundle {resolve(str(ca), base_dir)}" if ca else "the bundled CA list"
    mutual = ", with a client certificate" if cert else ""
    found.passed("tls", f"{side} {host}: https verified against {trusted}{mutual}")


def _context(found: Findings, side: str, ca: Path | None, key: str) -> ssl.SSLContext | None:
    where = f"{key}.tls.ca_bundle"
    if ca is not None and not ca.is_file():
        found.fail(
            "tls",
            f"{side} CA bundle {ca} ({where}) does not exist",
            f"point {where} at the trust's CA certificates (PEM)",
        )
        return None
    try:
        return ssl.create_default_context(cafile=str(ca) if ca else None)
    except (ssl.SSLError, OSError, ValueError) as exc:
        found.fail(
            "tls",
            f"{side} CA bundle {ca} ({where}) is not PEM certificates ({type(exc).__name__})",
            f"point {where} at PEM certificates",
        )
        return None


def _client_cert(
    found: Findings, side: str, context: ssl.SSLContext, cert: Path, private_key: Path, key: str
) -> bool:
    for path, name in ((cert, "client_cert_file"), (private_key, "client_key_file")):
        if not path.is_file():
            found.fail(
                "tls",
                f"{side} {path} ({key}.tls.{name}) does not exist",
                f"put the client certificate and its key where {key}.tls names them",
            )
            return False
    try:
        context.load_cert_chain(str(cert), str(private_key), password=lambda: "")
    except (ssl.SSLError, OSError) as exc:
        found.fail(
            "tls",
            f"{side} client certificate {cert} and key {private_key} do not load together "
            f"({type(exc).__name__})",
            "give the PEM certificate and its own unencrypted key (mode 0600)",
        )
        return False
    return True


def quick_options(options: Mapping[str, Any], timeout: float, *, page_size: bool) -> dict[str, Any]:
    """The adapter's options for one read: one attempt, deadlines at most ``timeout``."""
    quick = dict(options)
    quick["read_attempts"] = 1
    for name in _TIMEOUTS:
        quick[name] = _shorter(options.get(name), timeout)
    if page_size:
        quick["page_size"] = 1
    oauth2 = options.get("oauth2")
    if isinstance(oauth2, Mapping):
        quick["oauth2"] = {
            **oauth2,
            "timeout_seconds": _shorter(oauth2.get("timeout_seconds"), timeout),
        }
    return quick


def _shorter(value: object, timeout: float) -> float:
    """``value`` seconds, at most ``timeout`` (``timeout`` when it is not a positive number)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return min(float(value), timeout)
    return timeout


def probe_trust(
    found: Findings,
    adapter: str,
    options: Mapping[str, Any],
    *,
    base_dir: Path,
    key: str,
    provider_code: str,
    mapping: MappingFile | None,
    timeout: float,
) -> None:
    """The ``trust`` check of an HTTP trust: one referral listing, page size 1, since now."""
    base_url = str(options.get("base_url", ""))
    quick = quick_options(options, timeout, page_size=True)
    started = time.monotonic()
    try:
        with quiet("ehr_bridge.security.files"):
            source = create_adapter(
                "trust",
                AdapterConfig.model_validate({**quick, "adapter": adapter}),
                base_dir=base_dir,
                key=key,
                provider_code=provider_code,
                mapping=mapping,
            )
        source.fetch_referrals(updated_since=datetime.now(UTC), page=None)
    except EhrBridgeError as exc:
        report_failure(
            found,
            "trust",
            exc,
            base_url=base_url,
            key=key,
            options=options,
            base_dir=base_dir,
            timeout=timeout,
        )
        return
    elapsed = time.monotonic() - started
    found.passed(
        "trust",
        f"{host_of(base_url)} answered an authenticated referral listing "
        f"({elapsed:.2f} s; base_url {base_url})",
    )


def probe_fhir_provider(
    found: Findings, options: Mapping[str, Any], *, base_dir: Path, key: str, timeout: float
) -> None:
    """The ``provider`` check of a FHIR provider: one Bundle search, count 1, since now."""
    base_url = str(options.get("base_url", ""))
    quick = quick_options(options, timeout, page_size=False)
    try:
        parsed = FhirProviderOptions.model_validate(quick)
    except ValidationError:
        return  # the connection's config check names the key
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        with quiet("ehr_bridge.security.files"):
            session = build_session(parsed, quick, base_url=base_url, base_dir=base_dir, key=key)
        bearer = parsed.oauth2 is None and parsed.auth == "bearer"
        token = read_secret(quick, "token", base_dir=base_dir, key=key) if bearer else None
        http = FhirHttp(
            base_url, token, timeout=parsed.timeout_seconds, read_attempts=1, session=session
        )
        http.search("Bundle", {"type": "collection", "_count": "1", "_lastUpdated": f"ge{since}"})
    except EhrBridgeError as exc:
        report_failure(
            found,
            "provider",
            exc,
            base_url=base_url,
            key=key,
            options=options,
            base_dir=base_dir,
            timeout=timeout,
        )
        return
    found.passed(
        "provider",
        f"FHIR server {host_of(base_url)} answered an authenticated "
        f"Bundle search (base_url {base_url})",
    )


def probe_hl7(found: Findings, hl7: Hl7v2Options, *, key: str, timeout: float) -> None:
    """The ``trust`` check of an HL7 v2 trust's send side: a TCP connect to its MLLP peer."""
    send = hl7.send
    if send is None:
        found.warn(
            "trust",
            f"no {key}.send: write-backs to the trust cannot be sent",
            f"set {key}.send.host and port (MLLP) or {key}.send.folder",
        )
        return
    if send.host is None or send.port is None:
        return  # a folder: checked with the other folders
    address = f"{send.host}:{send.port}"
    try:
        with socket.create_connection(
            (send.host, send.port), timeout=min(timeout, send.connect_timeout_seconds)
        ):
            pass
    except OSError as exc:
        found.fail(
            "trust",
            f"cannot connect to the HL7 v2 peer {address} ({type(exc).__name__})",
            f"check {key}.send.host and {key}.send.port, that the interface engine listens "
            "there, and that its firewall lets this host in",
        )
        return
    found.passed("trust", f"HL7 v2 peer {address} accepts connections (MLLP; nothing sent)")


def report_failure(
    found: Findings,
    check: str,
    exc: EhrBridgeError,
    *,
    base_url: str,
    key: str,
    options: Mapping[str, Any],
    base_dir: Path,
    timeout: float,
) -> None:
    """One FAIL saying what the failed read means and what to change."""
    host, cause = host_of(base_url), exc.__context__
    reach = (
        f"check {key}.base_url ({base_url}), that {host} lets this host in (firewall), and "
        f"{key}.proxy_url if the way out is through a proxy"
    )
    if isinstance(exc, ConnectionStopError):
        found.fail(
            check,
            f"{host} refused our credentials: {exc.safe_message}",
            credentials_fix(options, key, base_dir),
        )
    elif isinstance(exc, ConfigError):
        found.fail(check, exc.safe_message, f"correct {exc.key or key} in the config")
    elif isinstance(cause, requests.exceptions.SSLError):
        found.fail(
            "tls",
            f"TLS with {host} failed (SSLError): its certificate is not one this host trusts, "
            "or not for this name",
            f"set {key}.tls.ca_bundle to the CA certificates (PEM) that signed it",
        )
    elif isinstance(exc, CallDeadlineError) or isinstance(cause, requests.exceptions.Timeout):
        found.fail(check, f"no answer from {host} within {timeout:g} s", reach)
    elif isinstance(cause, requests.exceptions.ConnectionError):
        found.fail(
            check,
            f"cannot connect to {host} ({type(cause).__name__}: refused, unknown name or no route)",
            reach,
        )
    elif isinstance(exc, TransientError):
        found.fail(
            check,
            f"{host} is failing: {exc.safe_message}",
            "try again later; if it persists, ask the system's supplier",
        )
    elif isinstance(exc, TerminalError) and exc.code == "http_404":
        found.fail(
            check,
            f"{host} has nothing at {base_url} for this read (HTTP 404)",
            f"check {key}.base_url: the API's root, as its supplier documents it",
        )
    else:
        found.fail(
            check,
            f"{host}: {exc.safe_message}",
            "see the system's API documentation for this answer",
        )


def credentials_fix(options: Mapping[str, Any], key: str, base_dir: Path) -> str:
    """Where the refused credentials come from, to be checked with the other side."""
    if isinstance(options.get("oauth2"), Mapping):
        return (
            f"check {key}.oauth2.client_id and the client secret it names "
            "(client_secret_env or client_secret_file) with the other side"
        )
    if options.get("token_env"):
        return (
            f"check the token in environment variable {options['token_env']} "
            f"({key}.token_env): it must be the one issued for this client"
        )
    if options.get("token_file"):
        path = resolve(str(options["token_file"]), base_dir)
        return f"check the token in {path} ({key}.token_file): it must be the one issued"
    return f"set {key}.token_env or {key}.token_file"
