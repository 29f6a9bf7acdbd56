"""Proxies: the environment's are ignored, the config's ``proxy_url`` carries everything.

A stdlib HTTP proxy on 127.0.0.1 (``support.proxy.RecordingProxy``) records what reaches it;
the trust is the IAPTUS-style simulator on 127.0.0.1 with a bearer token, and an OAuth2
token endpoint beside it. With ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` (and their
lower-case twins) pointing at the proxy, a plain ``requests.Session`` goes through it (so
the test would see a leak), while the adapter's calls never reach it and neither the bearer
token nor the client secret is ever sent to it. With ``proxy_url`` set, every call goes
through the proxy, ``NO_PROXY`` notwithstanding. ``~/.netrc`` credentials are never sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from ehr_bridge.adapters.base import WriteItem
from ehr_bridge.adapters.iaptus.client import IaptusClient, create
from ehr_bridge.config import Secret
from ehr_bridge.errors import ConfigError
from ehr_bridge.observability.alerts import Alert
from ehr_bridge.observability.notifiers import WebhookNotifier
from ehr_bridge.sim import TrustSimulator
from support.proxy import RecordingProxy

TOKEN = "proxy-test-bearer-token"
CLIENT_SECRET = "proxy-test-client-secret"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
NOTE = {"authored_at": "2026-11-10T20:25:00Z", "title": "Session 1", "text": "Slept better."}


class _Endpoint:
    """A loopback endpoint: an OAuth2 token answer on POST /token, 204 elsewhere; records."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                endpoint.seen.append(("POST", self.path, dict(self.headers.items())))
                if self.path != "/token":
                    self.send_response(204)
                    self.end_headers()
                    return
                body = json.dumps(
                    {"access_token": TOKEN, "token_type": "bearer", "expires_in": 3600}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trust() -> Iterator[TrustSimulator]:
    simulator = TrustSimulator(seed=5, referrals=3, token=TOKEN)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def endpoint() -> Iterator[_Endpoint]:
    served = _Endpoint()
    yield served
    served.close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProxy]:
    """The recording proxy, named by every proxy variable of the environment."""
    with RecordingProxy() as recording:
        for name in PROXY_VARIABLES:
            monkeypatch.setenv(name, recording.url)
            monkeypatch.setenv(name.lower(), recording.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        yield recording


def _adapter(
    trust: TrustSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **extra: Any
) -> IaptusClient:
    monkeypatch.setenv("PROXY_TEST_TOKEN", TOKEN)
    options = {"base_url": trust.api_url, "token_env": "PROXY_TEST_TOKEN", **extra}
    return create(options, base_dir=tmp_path, key="trust", provider_code="IESO01")


def _oauth2_adapter(
    trust: TrustSimulator,
    endpoint: _Endpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    **extra: Any,
) -> IaptusClient:
    monkeypatch.setenv("PROXY_TEST_SECRET", CLIENT_SECRET)
    oauth2 = {
        "token_url": f"{endpoint.url}/token",
        "client_id": "ehr-bridge",
        "client_secret_env": "PROXY_TEST_SECRET",
    }
    options = {"base_url": trust.api_url, "oauth2": oauth2, **extra}
    return create(options, base_dir=tmp_path, key="trust", provider_code="IESO01")


def _pull_and_write(adapter: IaptusClient) -> None:
    page = adapter.fetch_referrals(updated_since=None, page=None)
    assert page.records, "the trust answered through whatever route was taken"
    referral = str(page.records[0]["id"])
    receipt = adapter.write(WriteItem("clinical_note", referral, "ref-proxy-1", dict(NOTE)))
    assert receipt.trust_id


def test_the_environment_would_reroute_a_plain_session(
    proxy: RecordingProxy, trust: TrustSimulator
) -> None:
    """The control: without our session, these variables do send the token to the proxy."""
    requests.get(
        f"{trust.api_url}/referrals?referred_on_to=IESO01",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert proxy.seen and f"Bearer {TOKEN}" in proxy.tokens_seen()


def test_proxy_variables_in_the_environment_are_ignored(
    proxy: RecordingProxy, trust: TrustSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pull_and_write(_adapter(trust, tmp_path, monkeypatch))
    assert proxy.seen == []


def test_an_oauth2_token_and_its_secret_never_go_to_an_environment_proxy(
    proxy: RecordingProxy,
    trust: TrustSimulator,
    endpoint: _Endpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _pull_and_write(_oauth2_adapter(trust, endpoint, tmp_path, monkeypatch))
    assert [path for _, path, _ in endpoint.seen] == ["/token"]
    assert proxy.seen == []


def test_a_configured_proxy_carries_every_request(
    proxy: RecordingProxy,
    trust: TrustSimulator,
    endpoint: _Endpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    _pull_and_write(_oauth2_adapter(trust, endpoint, tmp_path, monkeypatch, proxy_url=proxy.url))
    targets = [(seen.method, seen.target.split("?")[0]) for seen in proxy.seen]
    assert targets[0] == ("POST", f"{endpoint.url}/token")
    assert ("GET", f"{trust.api_url}/referrals") in targets
    assert any(m == "POST" and t.endswith("/clinical-notes") for m, t in targets)
    assert f"Bearer {TOKEN}" in proxy.tokens_seen()  # the operator chose this route


def test_a_webhook_ignores_environment_proxies_and_netrc(
    proxy: RecordingProxy, endpoint: _Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-password\n", "utf-8")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    alert = Alert(
        "firing", "failing", "trust-a", datetime(2026, 11, 2, 9, 0, tzinfo=UTC), "pull failing", {}
    )
    WebhookNotifier(Secret(f"{endpoint.url}/hook")).send(alert)
    assert [path for _, path, _ in endpoint.seen] == ["/hook"]
    assert "Authorization" not in endpoint.seen[0][2]
    assert proxy.seen == []
    via = WebhookNotifier(Secret(f"{endpoint.url}/hook"), proxy_url=proxy.url)
    via.send(alert)
    assert [seen.target for seen in proxy.seen] == [f"{endpoint.url}/hook"]
    assert proxy.tokens_seen() == []


@pytest.mark.parametrize(
    ("base_url", "proxy_url", "message"),
    [
        ("https://trust.example/api", "http://user:pw@proxy.example:3128", "no user, password"),
        ("https://trust.example/api", "socks5://proxy.example:1080", "http:// or https://"),
        ("https://trust.example/api", "http://proxy.example:3128/path", "no user, password"),
        ("http://127.0.0.1:9/api", "http://proxy.example:3128", "proxy on this machine"),
    ],
)
def test_proxy_url_mistakes_name_their_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_url: str, proxy_url: str, message: str
) -> None:
    monkeypatch.setenv("PROXY_TEST_TOKEN", TOKEN)
    options = {"base_url": base_url, "token_env": "PROXY_TEST_TOKEN", "proxy_url": proxy_url}
    with pytest.raises(ConfigError, match=message) as caught:
        create(options, base_dir=tmp_path, key="trust", provider_code="IESO01")
    assert caught.value.key == "trust.proxy_url"
    assert "pw" not in caught.value.safe_message


def test_https_may_go_through_a_proxy_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXY_TEST_TOKEN", TOKEN)
    options = {
        "base_url": "https://trust.example/api",
        "token_env": "PROXY_TEST_TOKEN",
        "proxy_url": "http://proxy.trust.example:3128",
    }
    adapter = create(options, base_dir=tmp_path, key="trust", provider_code="IESO01")
    assert adapter._http.proxies == {
        "http": "http://proxy.trust.example:3128",
        "https": "http://proxy.trust.example:3128",
    }
