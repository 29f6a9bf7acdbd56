"""TLS always verified (a CA bundle path is the only knob), mutual TLS, no plain http out."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ehr_bridge.adapters.iaptus.client import create
from ehr_bridge.errors import ConfigError, TerminalError, TransientError
from ehr_bridge.security import SecureSession, TransportOptions, build_session

ONE_DAY = dt.timedelta(days=1)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    subject: str, issuer: tuple[x509.Name, Any] | None, *, ca: bool = False, server: bool = False
) -> tuple[x509.Certificate, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0] if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - ONE_DAY)
        .not_valid_after(now + ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def _write(folder: Path, name: str, cert: x509.Certificate, key: Any) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        peer = self.connection.getpeercert()
        body = b'{"items": [], "next_page_token": null, "client": "%s"}' % (
            dict(x[0] for x in peer["subject"])["commonName"].encode()
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path | str]]:
    folder = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = _issue("Trust test CA", None, ca=True)
    server_cert, server_key = _issue("127.0.0.1", (ca_cert.subject, ca_key), server=True)
    client_cert, client_key = _issue("ehr-bridge", (ca_cert.subject, ca_key))
    ca_path, _ = _write(folder, "ca", ca_cert, ca_key)
    server_paths = _write(folder, "server", server_cert, server_key)
    client_paths = _write(folder, "client", client_cert, client_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*server_paths)
    context.load_verify_locations(ca_path)
    context.verify_mode = ssl.CERT_REQUIRED
    httpd = HTTPServer(("127.0.0.1", 0), _Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {
        "folder": folder,
        "url": f"https://127.0.0.1:{httpd.server_address[1]}/api/v1",
        "ca": ca_path,
        "cert": client_paths[0],
        "key": client_paths[1],
    }
    httpd.shutdown()


def _adapter(pki: dict[str, Any], tls: dict[str, str]) -> Any:
    options = {"base_url": pki["url"], "token_env": "TLS_TOKEN", "read_attempts": 1, "tls": tls}
    return create(options, base_dir=pki["folder"], key="trust", provider_code="IESO01")


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLS_TOKEN", "t")


def test_mutual_tls_with_the_trusts_ca_bundle_works(pki: dict[str, Any]) -> None:
    adapter = _adapter(
        pki,
        {"ca_bundle": "ca.pem", "client_cert_file": "client.pem", "client_key_file": "client.key"},
    )
    assert adapter.fetch_referrals(updated_since=None, page=None).records == []


def test_without_the_client_certificate_the_trust_refuses_the_handshake(
    pki: dict[str, Any],
) -> None:
    adapter = _adapter(pki, {"ca_bundle": "ca.pem"})
    with pytest.raises(TransientError, match="GET /referrals"):
        adapter.fetch_referrals(updated_since=None, page=None)


def test_a_server_certificate_outside_the_bundle_is_refused(pki: dict[str, Any]) -> None:
    adapter = _adapter(pki, {"client_cert_file": "client.pem", "client_key_file": "client.key"})
    with pytest.raises(TransientError, match="SSLError"):
        adapter.fetch_referrals(updated_since=None, page=None)


def test_verification_cannot_be_switched_off(pki: dict[str, Any]) -> None:
    session = SecureSession()
    with pytest.raises(requests.exceptions.SSLError):
        session.get(pki["url"] + "/referrals", verify=False, timeout=5)
    assert SecureSession(verify=False).verify is True
    with pytest.raises(ConfigError, match="verify"):
        create(
            {"base_url": pki["url"], "token_env": "TLS_TOKEN", "verify": False},
            base_dir=pki["folder"], key="trust", provider_code="IESO01",
        )  # fmt: skip


@pytest.mark.parametrize(
    ("tls", "key"),
    [
        ({"ca_bundle": "missing.pem"}, "trust.tls.ca_bundle"),
        ({"client_cert_file": "client.pem"}, "trust.tls"),
        (
            {"client_cert_file": "client.pem", "client_key_file": "nope.key"},
            "trust.tls.client_key_file",
        ),
    ],
)
def test_tls_configuration_mistakes_name_their_key(
    pki: dict[str, Any], tls: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _adapter(pki, tls)
    assert caught.value.key == key


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://trust.example/api", True),
        ("http://127.0.0.1:8080/api", True),
        ("http://localhost/api", True),
        ("http://[::1]:9/api", True),
        ("http://trust.example/api", False),
        ("http://10.1.2.3/api", False),
    ],
)
def test_plain_http_goes_only_to_this_machine(tmp_path: Path, url: str, ok: bool) -> None:
    if ok:
        build_session(TransportOptions(), {}, base_url=url, base_dir=tmp_path, key="trust")
        return
    with pytest.raises(ConfigError) as caught:
        build_session(TransportOptions(), {}, base_url=url, base_dir=tmp_path, key="trust")
    assert caught.value.key == "trust.base_url"


class _EmptyBody:
    """What the session reads of urllib3's response: no bytes."""

    def read(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        return b""

    def close(self) -> None:
        return


class _Recorder(requests.adapters.BaseAdapter):
    """A transport that records what it was asked to do and answers with a redirect."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        self.calls.append(kwargs)
        response = requests.Response()
        response.status_code, response.request, response.url = 302, request, str(request.url)
        response.headers["Location"] = "https://elsewhere.example/steal"
        response.raw = _EmptyBody()
        return response

    def close(self) -> None:
        return


def test_the_session_forces_its_tls_settings_and_follows_no_redirect(tmp_path: Path) -> None:
    session = SecureSession(verify=str(tmp_path / "ca.pem"), cert=("c.pem", "k.pem"))
    recorder = _Recorder()
    session.mount("https://", recorder)
    answer = session.get("https://trust.example/x", verify=False, cert=None, allow_redirects=True)
    assert answer.status_code == 302 and len(recorder.calls) == 1
    sent = recorder.calls[0]
    assert sent["verify"] == str(tmp_path / "ca.pem") and sent["cert"] == ("c.pem", "k.pem")


def test_an_adapter_treats_a_redirect_as_a_refusal(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("TLS_TOKEN", "t")
    adapter = create(
        {"base_url": "https://trust.example/api/v1", "token_env": "TLS_TOKEN"},
        base_dir=tmp_path, key="trust", provider_code="IESO01",
    )  # fmt: skip
    adapter._http.mount("https://", _Recorder())
    with pytest.raises(TerminalError, match="HTTP 302"):
        adapter.fetch_referrals(updated_since=None, page=None)
