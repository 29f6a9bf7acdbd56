"""The daemon with its observability: served while it runs, gone when it stops; pull brings
deliver forward, so a new referral does not wait for the deliver interval."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from ehr_bridge.config import load_config
from ehr_bridge.domain.ids import resource_id
from ehr_bridge.errors import ConfigError
from ehr_bridge.observability import Alert, ObservabilityServer, build_observability
from ehr_bridge.sim import Fault
from ehr_bridge.sync.scheduler import run_daemon
from support.bridge import running_bridge

pytestmark = pytest.mark.slow

SCHEDULE = """
[connection.schedule]
pull_seconds = 0.5
deliver_seconds = 120
collect_seconds = 120
push_seconds = 120

[observability]
port = 0
failure_alert_minutes = 0.01
"""


class Collected:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


def _wait(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _serving(server: ObservabilityServer) -> bool:
    try:
        return bool(server.url)
    except ConfigError:
        return False


def test_daemon_serves_health_and_delivers_new_referrals_right_after_pull(
    tmp_path: Path,
) -> None:
    with running_bridge(tmp_path, seed=9, referrals=3, extra_config=SCHEDULE) as bridge:
        config = load_config(bridge.config_path)
        schedule = config.connection[0].schedule
        collected = Collected()
        obs = build_observability(
            config.observability,
            {bridge.conn.name: schedule},
            bridge.store,
            notifiers=[collected],
            cache_seconds=0,
        )
        stop = threading.Event()
        daemon = threading.Thread(
            target=run_daemon,
            args=([(bridge.conn, schedule)], bridge.store, stop),
            kwargs={"services": [obs]},
        )
        daemon.start()
        try:
            server = obs.server
            assert server is not None
            _wait(lambda: _serving(server))
            url = server.url
            _wait(lambda: requests.get(f"{url}/healthz", timeout=5).status_code == 200)
            delivered = bridge.platform.referrals_dir
            _wait(lambda: len(list(delivered.glob("*.json"))) == 3)
            record = bridge.simulator.state.add_referral()
            arrived = time.monotonic()
            wanted = (
                delivered / f"{resource_id(bridge.conn.name, 'ServiceRequest', record['id'])}.json"
            )
            _wait(wanted.exists, timeout=15)
            # well within the 120 s deliver interval: pull (every 0.5 s) brought deliver on
            assert time.monotonic() - arrived < 10
            metrics = requests.get(f"{url}/metrics", timeout=5).text
            assert (
                'ehr_bridge_records_total{connection="demo-trust",flow="pull",outcome="stored"} 4.0'
                in metrics
            )
        finally:
            stop.set()
            daemon.join(timeout=30)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/healthz", timeout=2)
        assert collected.alerts == []  # nothing failed


def test_a_failing_connection_alerts_once_then_recovers(tmp_path: Path) -> None:
    with running_bridge(tmp_path, seed=9, referrals=2, extra_config=SCHEDULE) as bridge:
        config = load_config(bridge.config_path)
        schedule = config.connection[0].schedule
        collected = Collected()
        obs = build_observability(
            config.observability,
            {bridge.conn.name: schedule},
            bridge.store,
            notifiers=[collected],
            cache_seconds=0,
        )
        bridge.simulator.faults.add(
            Fault("status", method="GET", path="/api/v1/referrals", status=401, times=4)
        )
        stop = threading.Event()
        daemon = threading.Thread(
            target=run_daemon,
            args=([(bridge.conn, schedule)], bridge.store, stop),
            kwargs={"services": [obs]},
        )
        daemon.start()
        try:
            _wait(lambda: [a.state for a in collected.alerts] == ["firing", "resolved"])
            time.sleep(1.0)  # pull keeps succeeding: no further alert
        finally:
            stop.set()
            daemon.join(timeout=30)
        assert [(a.state, a.kind) for a in collected.alerts] == [
            ("firing", "failing"),
            ("resolved", "failing"),
        ]
