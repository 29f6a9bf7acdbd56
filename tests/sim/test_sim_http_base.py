"""The simulators' one HTTP base: a toy simulator on it, then the three real ones agreeing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ehr_bridge.errors import ConfigError, RecordValidationError
from ehr_bridge.sim import Fault, FaultPlan, TrustSimulator
from ehr_bridge.sim.fhir_server import FhirServerSimulator
from ehr_bridge.sim.http_base import (
    EXPORT,
    HEALTH,
    Dialect,
    Request,
    Response,
    Route,
    SimulatorBase,
    int_arg,
)
from ehr_bridge.sim.pcmis import KEY_HEADER, PcmisSimulator

TOKEN = "toy-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class ToyState:
    def __init__(self) -> None:
        self.notes: dict[str, Any] = {}

    def export(self) -> dict[str, Any]:
        return {"notes": self.notes}


def _put(state: ToyState, request: Request) -> Response:
    state.notes[request.params["name"]] = request.body
    return Response(201, {"name": request.params["name"]})


def _get(state: ToyState, request: Request) -> Response:
    if request.params["name"] not in state.notes:
        raise RecordValidationError("no such note", field="name")
    return Response(200, {"limit": int_arg(request, "limit", 10, "must be a number")})


def _boom(state: ToyState, request: Request) -> Response:
    raise RuntimeError("secret detail")


def _error(status: int, code: str, message: str, field: str | None) -> Response:
    return Response(status, {"code": code, "field": field})


def _refusal(exc: Exception) -> Response | None:
    if isinstance(exc, RecordValidationError):
        return _error(422, "invalid", exc.reason, exc.field)
    return None


class ToySimulator(SimulatorBase):
    routes = (
        Route("/toy/notes/{name}", {"GET": _get, "PUT": _put}, where={"name": "[a-z]+"}),
        Route("/toy/{kind}/boom", {"GET": _boom}, shown=("kind",)),
        EXPORT,
        HEALTH,
    )
    dialect = Dialect(
        name="toy-sim",
        error=_error,
        refusal=_refusal,
        max_body=1000,
        challenge='Bearer realm="toy"',
        problems={
            kind: (kind, kind)
            for kind in (
                "malformed",
                "unauthorised",
                "not_found",
                "method",
                "too_large",
                "fault",
                "internal",
            )
        },
    )
    api_path = "/toy"

    def __init__(self) -> None:
        self.state = ToyState()
        self.token = TOKEN
        self.faults = FaultPlan()


@pytest.fixture
def toy() -> Iterator[ToySimulator]:
    with ToySimulator() as sim:
        yield sim


def call(sim: SimulatorBase, method: str, path: str, **kw: Any) -> requests.Response:
    kw.setdefault("headers", AUTH)
    return requests.request(method, sim.base_url + path, timeout=5, **kw)


def test_routes_take_decoded_parameters_that_match_their_pattern(toy: ToySimulator) -> None:
    assert call(toy, "PUT", "/toy/notes/one", json={"a": 1}).status_code == 201
    assert toy.state.notes == {"one": {"a": 1}}
    assert call(toy, "PUT", "/toy/notes/ONE", json={}).json()["code"] == "not_found"
    assert call(toy, "GET", "/toy/notes/one", params={"limit": "7"}).json() == {"limit": 7}
    refused = call(toy, "GET", "/toy/notes/one", params={"limit": "x"})
    assert (refused.status_code, refused.json()) == (422, {"code": "invalid", "field": "limit"})
    wrong = call(toy, "DELETE", "/toy/notes/one")
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "GET, PUT")


def test_credentials_bodies_and_errors_answer_in_the_dialect(toy: ToySimulator) -> None:
    for path in ("/toy/notes/one", "/nowhere", "/_sim/export"):
        anonymous = call(toy, "GET", path, headers={})
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="toy"'
    assert call(toy, "GET", "/_sim/health", headers={}).json() == {"ok": True}
    malformed = call(toy, "PUT", "/toy/notes/one", data=b"{", headers=AUTH)
    assert malformed.json()["code"] == "malformed"
    too_large = call(toy, "PUT", "/toy/notes/one", json={"x": "y" * 1000})
    assert (too_large.status_code, too_large.json()["code"]) == (413, "too_large")
    assert call(toy, "GET", "/toy/x/boom").json() == {"code": "internal", "field": None}
    assert toy.state.notes == {}


def test_faults_and_latency_touch_the_api_never_the_control_routes(toy: ToySimulator) -> None:
    toy.faults.add(Fault("status", times=3, status=503, retry_after=2))
    assert call(toy, "GET", "/_sim/export").status_code == 200
    refused = call(toy, "PUT", "/toy/notes/one", json={})
    assert (refused.status_code, refused.headers["Retry-After"]) == (503, "2")
    toy.faults.clear()
    toy.faults.add(Fault("drop", method="PUT"))
    with pytest.raises(requests.ConnectionError):
        call(toy, "PUT", "/toy/notes/two", json={})
    assert "two" in toy.state.notes
    toy.faults.add(Fault("reset", path="/toy/boat/boom"))
    with pytest.raises(requests.ConnectionError):
        call(toy, "GET", "/toy/boat/boom")
    assert toy.faults.fired == 3


def test_the_log_names_the_template_never_the_path_or_query(
    toy: ToySimulator, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="ehr_bridge.sim"):
        call(toy, "GET", "/toy/secret/boom", params={"q": "SECRET"})
        call(toy, "GET", "/toy/notes/secret")
    assert "GET /toy/secret/boom -> 500" in caplog.text
    assert "GET /toy/notes/{name} -> 422" in caplog.text
    assert "RuntimeError" in caplog.text
    assert "SECRET" not in caplog.text and "detail" not in caplog.text


def test_start_stop_and_a_busy_port(toy: ToySimulator) -> None:
    session, health = requests.Session(), f"{toy.base_url}/_sim/health"
    assert toy.api_url == f"{toy.base_url}/toy" and session.get(health, timeout=5).ok
    with pytest.raises(ConfigError, match="cannot listen on port"):
        ToySimulator().start(port=int(toy.base_url.rsplit(":", 1)[1]))
    toy.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(health, timeout=5)
    toy.stop()
    with pytest.raises(ConfigError, match="not running"):
        _ = toy.base_url


def test_the_three_trust_simulators_answer_oversized_bodies_with_413() -> None:
    big = b"[" + b"0," * (3 * 1024 * 1024) + b"0]"
    with (
        TrustSimulator(referrals=1, token=TOKEN) as iaptus,
        PcmisSimulator(referrals=1, api_key=TOKEN) as pcmis,
        FhirServerSimulator(token=TOKEN) as fhir,
    ):
        for url, headers, limit in (
            (f"{iaptus.api_url}/referrals/SR0000001/care-contacts", AUTH, 1 << 20),
            (f"{pcmis.api_url}/referrals/PCM-000001/notes", {KEY_HEADER: TOKEN}, 1 << 20),
            (f"{fhir.base_url}/Encounter", AUTH, 4 << 20),
        ):
            session = requests.Session()
            body = big if limit == 1 << 20 else big * 2
            answer = session.post(url, data=body, headers=headers, timeout=10)
            assert answer.status_code == 413, url
            assert session.get(url.rsplit("/", 1)[0], headers=headers, timeout=5).status_code < 500


def test_pcmis_faults_are_counted_and_skip_its_control_routes() -> None:
    with PcmisSimulator(referrals=1, api_key=TOKEN) as sim:
        sim.fail_next(503, count=1)
        headers = {KEY_HEADER: TOKEN}
        assert requests.get(f"{sim.base_url}/_sim/export", headers=headers, timeout=5).ok
        answer = requests.get(f"{sim.api_url}/referrals", headers=headers, timeout=5)
        assert answer.status_code == 503
        assert answer.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert sim.faults.counts == {"status_503": 1}
