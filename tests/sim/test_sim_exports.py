"""The simulator's public surface: what ``ehr_bridge.sim`` exports and the agreed signature."""

from __future__ import annotations

import inspect

import ehr_bridge.sim as sim
from ehr_bridge.sim import TrustSimulator


def test_everything_in_all_is_importable_and_nothing_else_is_advertised() -> None:
    assert sorted(sim.__all__) == sorted(set(sim.__all__))
    for name in sim.__all__:
        assert getattr(sim, name) is not None
    assert "platform" not in sim.__all__


def test_simulator_keeps_the_agreed_keyword_only_signature() -> None:
    parameters = inspect.signature(TrustSimulator.__init__).parameters
    expected = {
        "seed": 1,
        "referrals": 50,
        "hostile": 0,
        "provider_code": "IESO01",
        "token": "sim-token",
        "now": None,
    }
    for name, default in expected.items():
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[name].default == default
    start = inspect.signature(TrustSimulator.start).parameters
    assert (start["host"].default, start["port"].default) == ("127.0.0.1", 0)
