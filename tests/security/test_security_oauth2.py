"""OAuth2 client credentials: cached token, refreshed before expiry, one retry on a 401."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses

from ehr_bridge.adapters.fhir import create_trust
from ehr_bridge.adapters.iaptus.client import IaptusClient, IaptusOptions, create
from ehr_bridge.adapters.rest import create as rest_create
from ehr_bridge.errors import ConfigError, ConnectionStopError, TransientError
from ehr_bridge.security import OAuth2ClientCredentials, build_session

API = "https://trust.example/api/v1"
TOKEN_URL = "https://login.trust.example/oauth2/token"
SECRET = "s3cret-client-value"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TokenServer:
    """The token endpoint and the API: which tokens were issued, which the API accepts."""

    def __init__(self, lifetime: int = 3600) -> None:
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.token_requests: list[requests.PreparedRequest] = []
        self.api_tokens: list[str] = []
        self.lifetime = lifetime

    def token(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.token_requests.append(request)
        self.issued.append(f"tok-{len(self.issued) + 1}")
        body = f'{{"access_token": "{self.issued[-1]}", "token_type": "bearer", '
        return 200, {}, body + f'"expires_in": {self.lifetime}}}'

    def api(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        token = str(request.headers.get("Authorization", "")).removeprefix("Bearer ")
        self.api_tokens.append(token)
        if token not in self.issued or token in self.revoked:
            return 401, {}, '{"error": "invalid_token"}'
        return 200, {}, '{"items": [], "next_page_token": null}'

    def install(self, mock: responses.RequestsMock) -> None:
        mock.add_callback(responses.POST, TOKEN_URL, callback=self.token)
        mock.add_callback(responses.GET, f"{API}/referrals", callback=self.api)


def _options(**oauth2: Any) -> dict[str, Any]:
    table = {"token_url": TOKEN_URL, "client_id": "ehr-bridge", "client_secret_env": "SEC_T"}
    return {"base_url": API, "oauth2": {**table, **oauth2}}


def _client(tmp_path: Path, clock: Clock, **oauth2: Any) -> IaptusClient:
    raw = _options(**oauth2)
    parsed = IaptusOptions.model_validate(raw)
    session = build_session(parsed, raw, base_url=API, base_dir=tmp_path, key="trust", clock=clock)
    return IaptusClient(parsed, None, "IESO01", session)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEC_T", SECRET)


def test_the_token_is_fetched_once_and_reused(tmp_path: Path) -> None:
    server = TokenServer()
    with responses.RequestsMock() as mock:
        server.install(mock)
        client = _client(tmp_path, Clock(), scope="referrals.read")
        for _ in range(3):
            client.fetch_referrals(updated_since=None, page=None)
    assert server.issued == ["tok-1"] and server.api_tokens == ["tok-1"] * 3
    sent = server.token_requests[0]
    form = parse_qs(str(sent.body))
    assert form == {"grant_type": ["client_credentials"], "scope": ["referrals.read"]}
    expected = base64.b64encode(f"ehr-bridge:{SECRET}".encode()).decode()
    assert sent.headers["Authorization"] == f"Basic {expected}"


def test_the_token_is_refreshed_before_it_expires(tmp_path: Path) -> None:
    server, clock = TokenServer(lifetime=600), Clock()
    with responses.RequestsMock() as mock:
        server.install(mock)
        client = _client(tmp_path, clock, refresh_margin_seconds=60)
        client.fetch_referrals(updated_since=None, page=None)
        clock.now += 539  # still more than the margin left
        client.fetch_referrals(updated_since=None, page=None)
        clock.now += 1  # 60 s before expiry: refresh now, not after a 401
        client.fetch_referrals(updated_since=None, page=None)
    assert server.api_tokens == ["tok-1", "tok-1", "tok-2"]


def test_a_401_fetches_a_new_token_and_sends_the_request_once_more(tmp_path: Path) -> None:
    server = TokenServer()
    with responses.RequestsMock() as mock:
        server.install(mock)
        client = _client(tmp_path, Clock())
        client.fetch_referrals(updated_since=None, page=None)
        server.revoked.add("tok-1")  # e.g. the trust rotated its signing key
        page = client.fetch_referrals(updated_since=None, page=None)
    assert page.records == [] and server.api_tokens == ["tok-1", "tok-1", "tok-2"]


def test_a_second_401_stops_the_connection_after_exactly_one_retry(tmp_path: Path) -> None:
    server = TokenServer()
    server.revoked = {"tok-1", "tok-2", "tok-3"}
    with responses.RequestsMock() as mock:
        server.install(mock)
        client = _client(tmp_path, Clock())
        with pytest.raises(ConnectionStopError, match="HTTP 401"):
            client.fetch_referrals(updated_since=None, page=None)
    assert server.api_tokens == ["tok-1", "tok-2"]


def test_client_secret_post_sends_the_credentials_as_form_fields(tmp_path: Path) -> None:
    server = TokenServer()
    with responses.RequestsMock() as mock:
        server.install(mock)
        _client(tmp_path, Clock(), client_auth="post").fetch_referrals(
            updated_since=None, page=None
        )
    sent = server.token_requests[0]
    assert "Authorization" not in sent.headers
    assert parse_qs(str(sent.body))["client_secret"] == [SECRET]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, '{"error": "invalid_client", "error_description": "s3cret"}', ConnectionStopError),
        (400, '{"error": "leaked value 9434765919"}', ConnectionStopError),
        (200, '{"token_type": "bearer"}', ConnectionStopError),
        (200, '{"access_token": "x", "token_type": "mac"}', ConnectionStopError),
        (503, "", TransientError),
    ],
)
def test_token_endpoint_failures_are_named_without_its_text(
    tmp_path: Path, status: int, body: str, error: type[Exception]
) -> None:
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, TOKEN_URL, status=status, body=body)
        auth = _client(tmp_path, Clock())._http.auth
        assert isinstance(auth, OAuth2ClientCredentials)
        with pytest.raises(error) as caught:
            auth.token()
    message = str(caught.value)
    assert "s3cret" not in message and "9434765919" not in message and SECRET not in message
    if status == 401:
        assert "invalid_client" in message


def test_no_repr_shows_the_client_secret_or_the_token(tmp_path: Path) -> None:
    server = TokenServer()
    with responses.RequestsMock() as mock:
        server.install(mock)
        client = _client(tmp_path, Clock())
        client.fetch_referrals(updated_since=None, page=None)
    texts = [repr(client), repr(client._http), repr(client._http.auth), str(client._http.auth)]
    assert not any(SECRET in t or "tok-1" in t for t in texts)


@pytest.mark.parametrize(
    ("oauth2", "extra", "key"),
    [
        ({"client_secret": SECRET}, {}, "trust.oauth2.client_secret"),
        ({}, {"token_env": "T"}, "trust.oauth2"),
        ({"client_secret_env": None}, {}, "trust.oauth2.client_secret_env"),
        ({"token_url": "http://login.trust.example/token"}, {}, "trust.oauth2.token_url"),
    ],
)
def test_oauth2_configuration_mistakes_name_their_key(
    tmp_path: Path, oauth2: dict[str, Any], extra: dict[str, Any], key: str
) -> None:
    options = {**_options(), **extra}
    options["oauth2"] = {k: v for k, v in {**options["oauth2"], **oauth2}.items() if v}
    with pytest.raises(ConfigError) as caught:
        create(options, base_dir=tmp_path, key="trust", provider_code="IESO01")
    assert caught.value.key == key
    assert SECRET not in str(caught.value)


def test_the_fhir_adapter_takes_its_bearer_token_from_oauth2(tmp_path: Path) -> None:
    base = "https://fhir.trust.example/R4"
    server = TokenServer()
    options = {**_options(), "base_url": base}
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, TOKEN_URL, callback=server.token)
        mock.add_callback(responses.GET, f"{base}/Patient/p1", callback=lambda r: (
            200 if r.headers.get("Authorization") == "Bearer tok-1" else 401,
            {},
            '{"resourceType": "Patient", "id": "p1"}',
        ))  # fmt: skip
        trust = create_trust(options, base_dir=tmp_path, key="trust", provider_code="IESO01")
        assert trust._http.read("Patient", "p1") == {"resourceType": "Patient", "id": "p1"}
    with pytest.raises(ConfigError, match="oauth2"):
        create_trust({**options, "auth": "none"}, base_dir=tmp_path, key="t", provider_code="X")


def test_the_rest_adapter_takes_its_bearer_token_from_oauth2(tmp_path: Path) -> None:
    mapping = Path(__file__).resolve().parents[2] / "mappings" / "pcmis.yaml"
    options = {**_options(), "base_url": "https://pcmis.example/api/v2", "mapping": str(mapping)}
    client = rest_create(options, base_dir=tmp_path, key="trust", provider_code="IESO01")
    assert isinstance(client._http._session.auth, OAuth2ClientCredentials)
    assert "Authorization" not in client._http._headers()
