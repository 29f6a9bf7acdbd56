"""Connections are independent in time: `sync --once` runs them side by side.

One config, five connections: four on the trust simulator (answering after 150 ms, so a
cycle takes a noticeable time) and ``slow-trust`` on a trust that drips its answer a
byte a second (``support.hostile_peer``) until its pull's 5 s deadline. One `sync
--once` (through the CLI, in this process) must run the four fast cycles at the same
time (their runs, as recorded for `status`, overlap: run one after another they could
not), and each of them must be done long before the slow trust's pull gives up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.config import load_config
from ehr_bridge.security.keyring import open_store
from ehr_bridge.sim.faults import FaultRates
from ehr_bridge.store import RunRow
from support.bridge import running_bridge
from support.hostile_peer import HostilePeer

pytestmark = pytest.mark.slow

FAST = ["demo-trust", "fast-2", "fast-3", "fast-4"]
REFERRALS = 3
#: how long the slow trust's pull may take; a fast cycle takes about 1.5 s on a busy machine
SLOW_DEADLINE = 5.0

FAST_CONNECTION = """
[[connection]]
name = "{name}"
test_connection = true
mapping = "mappings/iaptus.yaml"

[connection.provider_org]
code = "IESO01"

[connection.trust]
adapter = "iaptus"
base_url = "{base_url}/api/v1"
token_file = "secrets/trust-token"
page_size = 20

[connection.provider]
adapter = "folder"
path = "provider-{name}"
"""

SLOW_CONNECTION = """
[[connection]]
name = "slow-trust"
test_connection = true
mapping = "mappings/iaptus.yaml"

[connection.provider_org]
code = "IESO01"

[connection.trust]
adapter = "iaptus"
base_url = "{base_url}/api/v1"
token_file = "secrets/trust-token"
timeout_seconds = 1
read_attempts = 10

[connection.provider]
adapter = "folder"
path = "provider-slow"

[connection.schedule]
flow_deadline_seconds = {deadline}
"""


@dataclass(frozen=True)
class Span:
    """When a connection's cycle ran: its first flow's start to its last flow's end."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class SyncOnce:
    exit_code: int
    reports: dict[str, list[dict[str, dict[str, object]]]]
    runs: dict[str, dict[str, RunRow]]

    def span(self, name: str) -> Span:
        runs = self.runs[name].values()
        return Span(min(r.started_at for r in runs), max(r.finished_at for r in runs))


@pytest.fixture(scope="module")
def sync_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncOnce]:
    workdir = tmp_path_factory.mktemp("side-by-side")
    with (
        HostilePeer("drip", byte_seconds=1.0) as peer,
        running_bridge(workdir, seed=4, referrals=REFERRALS) as bridge,
    ):
        bridge.simulator.faults.set_rates(FaultRates(latency_ms=150))
        extra = "".join(FAST_CONNECTION.format(name=n, base_url=bridge.base_url) for n in FAST[1:])
        extra += SLOW_CONNECTION.format(base_url=peer.base_url, deadline=SLOW_DEADLINE)
        with bridge.config_path.open("a", encoding="utf-8") as config:
            config.write(extra)
        result = CliRunner().invoke(
            app, ["--config", str(bridge.config_path), "sync", "--once", "--json"]
        )
        store = open_store(load_config(bridge.config_path))
        try:
            runs = {name: store.last_runs(name) for name in [*FAST, "slow-trust"]}
        finally:
            store.close()
        yield SyncOnce(result.exit_code, json.loads(result.stdout), runs)


def test_every_fast_connection_did_its_whole_cycle(sync_once: SyncOnce) -> None:
    assert sync_once.exit_code == 1  # the slow trust's pull failed, and says so
    assert "flow_deadline_seconds" in str(sync_once.reports["slow-trust"][0]["pull"]["error"])
    for name in FAST:
        (cycle,) = sync_once.reports[name]
        assert cycle["deliver"]["delivered"] == sync_once.reports["demo-trust"][0]["pull"]["stored"]
        assert not any("error" in counts for counts in cycle.values()), name
        assert set(sync_once.runs[name]) == {"pull", "deliver", "collect", "push", "risk"}


def test_four_fast_connections_run_at_the_same_time(sync_once: SyncOnce) -> None:
    spans = [sync_once.span(name) for name in FAST]
    # intervals on a line all meet if the latest start comes before the earliest end
    assert max(s.start for s in spans) < min(s.end for s in spans)


def test_the_slow_trust_delays_no_other_connection(sync_once: SyncOnce) -> None:
    slow_pull = sync_once.runs["slow-trust"]["pull"]
    for name in FAST:
        done = sync_once.span(name).end
        assert done < slow_pull.finished_at, name
        # long before: the slow pull ran to its deadline; no fast cycle waited for it
        assert (slow_pull.finished_at - done).total_seconds() > 1.0, name
