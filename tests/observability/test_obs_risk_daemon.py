"""In the daemon: an unacknowledged risk pages once, repeats on schedule, and stops when the
trust's duty team acknowledges it.

The real daemon (scheduler, risk lane, alert loop) in a thread, against the IAPTUS-style
trust simulator on loopback, with a risk window of seconds instead of an hour.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.config import load_config
from ehr_bridge.observability import Alert, RiskPolicy, build_observability
from ehr_bridge.sim.records import RISK_ALERT
from ehr_bridge.sync.scheduler import run_daemon
from support.bridge import Bridge, running_bridge
from support.trusts import PHQ9_ITEMS, HarnessReferral, score_bundle

pytestmark = pytest.mark.slow

ACK_SECONDS = 3.0
REPEAT_SECONDS = 6.0
CONFIG = f"""
[connection.schedule]
pull_seconds = 0.5
deliver_seconds = 0.5
collect_seconds = 120
push_seconds = 120
risk_seconds = 0.5

[connection.risk]
acknowledge_within_minutes = {ACK_SECONDS / 60}
repeat_alert_minutes = {REPEAT_SECONDS / 60}

[observability]
port = 0
"""


class Pager:
    def __init__(self) -> None:
        self.alerts: list[tuple[float, Alert]] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append((time.monotonic(), alert))

    def risk(self, state: str) -> list[tuple[float, Alert]]:
        return [(t, a) for t, a in self.alerts if a.kind == "risk" and a.state == state]


def _wait(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_an_unacknowledged_risk_pages_once_repeats_on_schedule_and_stops_when_seen(
    tmp_path: Path,
) -> None:
    with running_bridge(tmp_path, seed=9, referrals=2, extra_config=CONFIG) as bridge:
        config = load_config(bridge.config_path)
        schedule = config.connection[0].schedule
        pager = Pager()
        policy = RiskPolicy(ACK_SECONDS / 60, REPEAT_SECONDS / 60)
        obs = build_observability(
            config.observability,
            {bridge.conn.name: schedule},
            bridge.store,
            notifiers=[pager],
            cache_seconds=0,
            risk_policy={bridge.conn.name: policy},
        )
        stop = threading.Event()
        daemon = threading.Thread(
            target=run_daemon,
            args=([(bridge.conn, schedule)], bridge.store, stop),
            kwargs={"services": [obs]},
        )
        daemon.start()
        try:
            _wait(lambda: len(bridge.store.list_referrals(bridge.conn.name)) == 2)
            row = bridge.store.list_referrals(bridge.conn.name)[0]
            referral = HarnessReferral(row.id, row.patient_id, row.trust_referral_id)
            landed = time.monotonic()
            _drop(bridge, score_bundle(referral, "phq9", (*PHQ9_ITEMS[:8], 3)))
            state = bridge.simulator.state
            _wait(lambda: bool(state.list_items(row.trust_referral_id, RISK_ALERT)))
            assert time.monotonic() - landed < ACK_SECONDS  # written long before any page

            _wait(lambda: len(pager.risk("firing")) >= 2, timeout=ACK_SECONDS + 3 * REPEAT_SECONDS)
            (first_at, first), (second_at, second) = pager.risk("firing")[:2]
            assert first.details["why"] == "not_acknowledged"
            assert first.details["trust_referral_id"] == row.trust_referral_id
            assert second_at - first_at >= REPEAT_SECONDS - 0.5  # repeated on schedule, not sooner
            assert (first.details["alert"], second.details["alert"]) == (1, 2)

            [alert] = state.list_items(row.trust_referral_id, RISK_ALERT)
            state.acknowledge_risk_alert(row.trust_referral_id, alert["id"], {"by": "duty.1"})
            _wait(lambda: bool(pager.risk("resolved")), timeout=2 * REPEAT_SECONDS)
            firing = len(pager.risk("firing"))
            time.sleep(REPEAT_SECONDS + 1)
            assert len(pager.risk("firing")) == firing  # no page once acknowledged
        finally:
            stop.set()
            daemon.join(timeout=30)
        [view] = bridge.store.risks(bridge.conn.name)
        assert view.acknowledged_by == "duty.1" and view.alerts_sent == firing


def _drop(bridge: Bridge, bundle: dict[str, Any]) -> None:
    folder = bridge.config_path.parent / "provider" / "sessions"
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / "risk.json.tmp"
    temporary.write_text(json.dumps(bundle), "utf-8")
    temporary.rename(folder / "risk.json")
