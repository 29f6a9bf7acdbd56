"""Random fault rates, switchable while the simulator runs through /_sim/faults."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from ehr_bridge.sim import TrustSimulator

TOKEN = "fault-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def sim() -> Iterator[tuple[TrustSimulator, str]]:
    simulator = TrustSimulator(seed=3, referrals=3, token=TOKEN)
    base = simulator.start()
    yield simulator, base
    simulator.stop()


def _put(base: str, body: object) -> requests.Response:
    return requests.put(f"{base}/_sim/faults", json=body, headers=AUTH, timeout=5)


def test_rates_set_at_run_time_fire_and_are_counted(sim: tuple[TrustSimulator, str]) -> None:
    _simulator, base = sim
    assert _put(base, {"error_5xx": 1.0}).status_code == 200
    answer = requests.get(f"{base}/api/v1/referrals", headers=AUTH, timeout=5)
    assert answer.status_code == 503
    _put(base, {"rate_limit_429": 1.0, "retry_after_seconds": 7})
    answer = requests.get(f"{base}/api/v1/referrals", headers=AUTH, timeout=5)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"
    _put(base, {"reset": 1.0})
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/api/v1/referrals", headers=AUTH, timeout=5)
    state = requests.get(f"{base}/_sim/faults", headers=AUTH, timeout=5).json()
    assert state["fired"] == {"status_503": 1, "status_429": 1, "reset": 1}
    _put(base, {})
    assert requests.get(f"{base}/api/v1/referrals", headers=AUTH, timeout=5).status_code == 200


def test_ambiguous_writes_commit_then_drop(sim: tuple[TrustSimulator, str]) -> None:
    simulator, base = sim
    referral = simulator.export()["referrals"][0]["referral"]["id"]
    _put(base, {"ambiguous": 1.0})
    body = {"client_reference": "amb-1", "status": "accepted", "date": "2026-11-03"}
    url = f"{base}/api/v1/referrals/{referral}/status"
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json=body, headers=AUTH, timeout=5)
    _put(base, {})
    found = requests.get(url, params={"client_reference": "amb-1"}, headers=AUTH, timeout=5)
    assert len(found.json()["items"]) == 1  # it landed, though the client never heard
    again = requests.post(url, json=body, headers=AUTH, timeout=5)
    assert again.status_code == 409
    assert requests.get(f"{base}/_sim/faults", headers=AUTH, timeout=5).json()["conflicts"] == 1


@pytest.mark.parametrize("body", [{"error_5xx": 2}, {"nonsense": 0.1}, [1]])
def test_bad_fault_settings_are_refused(sim: tuple[TrustSimulator, str], body: object) -> None:
    _, base = sim
    answer = _put(base, body)
    assert answer.status_code == 422 and answer.json()["field"] == "faults"


def test_faults_need_the_token(sim: tuple[TrustSimulator, str]) -> None:
    _, base = sim
    assert requests.get(f"{base}/_sim/faults", timeout=5).status_code == 401
