"""/healthz and /metrics over HTTP, against a real bridge (simulator, SQLite, folder)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine

from ehr_bridge.config import ScheduleConfig
from ehr_bridge.errors import ConfigError
from ehr_bridge.observability import HealthChecker, ObservabilityServer, RunCache, build_metrics
from ehr_bridge.sim import Fault
from ehr_bridge.sync import events
from support.bridge import Bridge, running_bridge

pytestmark = pytest.mark.slow

ALLOWED_LABELS = {"connection", "flow", "kind", "state", "outcome", "le"}


class Served:
    def __init__(self, bridge: Bridge, now: datetime | None = None) -> None:
        self.now = now
        schedules = {bridge.conn.name: ScheduleConfig()}
        runs = RunCache(bridge.store, ttl=0)
        self.health = HealthChecker(bridge.store, schedules, runs, now=self._now)
        self.registry, self.flows = build_metrics(
            bridge.store, [bridge.conn.name], self.health, runs
        )
        self.server = ObservabilityServer("127.0.0.1", 0, self.registry, self.health)

    def _now(self) -> datetime:
        return self.now or datetime.now(UTC)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.server.url + path, timeout=10)


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[Bridge]:
    with running_bridge(tmp_path, seed=5, referrals=6, hostile=2) as running:
        yield running


@pytest.fixture
def served(bridge: Bridge) -> Iterator[Served]:
    served = Served(bridge)
    events.subscribe(served.flows)
    served.server.start()
    yield served
    served.server.stop()
    events.unsubscribe(served.flows)


def test_healthz_is_not_ready_before_the_first_cycle(served: Served) -> None:
    response = served.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["database"] == "ok"
    assert body["connections"]["demo-trust"]["flows"]["pull"] == {"state": "not_run"}


def test_healthz_is_ready_after_a_clean_cycle_then_fails_with_the_trust(
    bridge: Bridge, served: Served
) -> None:
    bridge.settle()
    response = served.get("/healthz")
    assert response.status_code == 200, response.text
    assert response.json()["connections"]["demo-trust"]["status"] == "ok"
    # the trust refuses our token: the next pull fails (and the cycle stops there)
    bridge.simulator.faults.add(Fault("status", method="GET", path="/api/v1/referrals", status=401))
    bridge.cycle()
    response = served.get("/healthz")
    assert response.status_code == 503
    verdict = response.json()["connections"]["demo-trust"]
    assert verdict["flows"]["pull"]["state"] == "failed"
    assert "pull: failed (auth_refused)" in verdict["problems"]
    assert verdict["flows"]["pull"]["code"] == "auth_refused"


def test_healthz_reports_stale_flows(bridge: Bridge, served: Served) -> None:
    bridge.settle()
    served.now = datetime.now(UTC) + timedelta(minutes=10)  # no run for ten minutes
    body = served.get("/healthz").json()
    flows = body["connections"]["demo-trust"]["flows"]
    assert flows["push"]["state"] == "stale"  # every 30 s: stale after 150 s
    assert flows["pull"]["state"] == "ok"  # every 300 s: stale only after 960 s
    assert body["status"] == "not_ready"


def test_healthz_when_the_database_is_gone(bridge: Bridge, served: Served, tmp_path: Path) -> None:
    bridge.settle()
    bridge.store.engine = create_engine(f"sqlite:///{tmp_path}/missing/dir/x.db")
    response = served.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "unavailable"
    metrics = served.get("/metrics").text
    assert "ehr_bridge_database_up 0.0" in metrics


def _samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_metrics_after_a_run_carry_the_figures_and_no_patient_data(
    bridge: Bridge, served: Served
) -> None:
    bridge.settle()
    response = served.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.text
    samples = _samples(text)
    conn = 'connection="demo-trust"'
    done = samples[f'ehr_bridge_outbox_rows{{{conn},state="done"}}']
    assert done == bridge.store.outbox_counts("demo-trust")["done"] > 0
    assert samples[f"ehr_bridge_dead_letters{{{conn}}}"] == 0
    assert samples[f"ehr_bridge_quarantine_open{{{conn}}}"] == 2  # the two hostile referrals
    assert samples[f'ehr_bridge_records_total{{{conn},flow="pull",outcome="stored"}}'] == 6
    assert samples[f'ehr_bridge_flow_runs_total{{{conn},flow="push",outcome="ok"}}'] >= 1
    assert samples[f"ehr_bridge_connection_healthy{{{conn}}}"] == 1
    assert 0 <= samples[f"ehr_bridge_lag_seconds{{{conn}}}"] < 120
    assert samples[f"ehr_bridge_pull_cursor_timestamp_seconds{{{conn}}}"] > 1.7e9
    written = (
        f'ehr_bridge_write_duration_seconds_count{{{conn},kind="care_contact",outcome="written"}}'
    )
    assert samples[written] >= 1
    assert f'ehr_bridge_last_success_timestamp_seconds{{{conn},flow="collect"}}' in samples
    assert f'ehr_bridge_last_run_records{{{conn},flow="deliver",outcome="delivered"}}' in samples
    labels = set(re.findall(r"([a-z_]+)=\"", text))
    assert labels <= ALLOWED_LABELS
    export = bridge.simulator.export()
    for entry in export["referrals"]:
        patient = entry["referral"].get("patient") or {}
        for key in ("nhs_number", "family_name", "postcode", "local_id"):
            value = patient.get(key)
            if isinstance(value, str) and len(value) > 3:
                assert value not in text
        assert str(entry["referral"].get("id")) not in text


def test_unknown_paths_are_404(served: Served) -> None:
    assert served.get("/").status_code == 404
    assert served.get("/metrics/../etc").status_code == 404


DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_the_operations_guide_lists_exactly_the_metrics_served(
    bridge: Bridge, served: Served
) -> None:
    bridge.settle()
    served_names = {family.name for family in served.registry.collect()}
    documented = set(re.findall(r"^\| `(ehr_bridge_[a-z_]+)` \|", DOC.read_text("utf-8"), re.M))
    documented = {name.removesuffix("_total") for name in documented}
    assert documented == served_names


def test_a_port_in_use_is_a_start_up_error_naming_the_key(served: Served) -> None:
    port = int(served.server.url.rsplit(":", 1)[1])
    second = ObservabilityServer("127.0.0.1", port, served.registry, served.health)
    with pytest.raises(ConfigError, match=rf"observability\.port: port {port} .*in use"):
        second.start()  # a daemon without /healthz would go unseen by its monitoring
    with pytest.raises(ConfigError):
        second.url  # noqa: B018
    second.stop()
    assert served.get("/metrics").status_code == 200
