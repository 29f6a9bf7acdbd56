"""A real bridge for end-to-end tests: simulator on loopback, real config, SQLite, folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from ehr_bridge.config import load_config
from ehr_bridge.demo import prepare_workdir
from ehr_bridge.security.keyring import open_store
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.sim.platform import SyntheticPlatform
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection, build_connections
from ehr_bridge.sync.cycle import run_cycle

TOKEN = "test-token"


@dataclass
class Bridge:
    simulator: TrustSimulator
    base_url: str
    config_path: Path
    conn: Connection
    store: Store
    platform: SyntheticPlatform

    def cycle(self) -> dict[str, Any]:
        def after(flow: str) -> None:
            if flow == "deliver":
                self.platform.step()

        return run_cycle(self.conn, self.store, between=after)

    def settle(self, max_cycles: int = 8) -> list[dict[str, Any]]:
        reports = []
        for _ in range(max_cycles):
            reports.append(self.cycle())
            counts = self.store.outbox_counts(self.conn.name)
            if counts.get("done") and not counts.get("pending") and not counts.get("in_flight"):
                break
        return reports

    def api(self, path: str, **params: str) -> Any:
        response = requests.get(
            f"{self.base_url}/api/v1{path}",
            params=params,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def trust_referral_id(self, service_request_id: str) -> str:
        bundle = json.loads(
            (self.platform.referrals_dir / f"{service_request_id}.json").read_text("utf-8")
        )
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "ServiceRequest":
                return str(resource["identifier"][0]["value"])
        raise AssertionError("referral bundle without ServiceRequest")


@contextmanager
def running_bridge(
    workdir: Path,
    *,
    seed: int = 3,
    referrals: int = 8,
    hostile: int = 0,
    extra_config: str = "",
    database_url: str | None = None,
) -> Iterator[Bridge]:
    simulator = TrustSimulator(seed=seed, referrals=referrals, hostile=hostile, token=TOKEN)
    base_url = simulator.start()
    store: Store | None = None
    try:
        config_path = prepare_workdir(workdir, base_url, TOKEN)
        text = config_path.read_text("utf-8") + extra_config
        if database_url:
            text = text.replace('url = "sqlite:///state/ehr-bridge.db"', f'url = "{database_url}"')
        config_path.write_text(text, "utf-8")
        config = load_config(config_path)
        (conn,) = build_connections(config)
        store = open_store(config)
        platform = SyntheticPlatform(config.resolve("provider"), seed=seed)
        yield Bridge(simulator, base_url, config_path, conn, store, platform)
    finally:
        if store is not None:
            store.close()
        simulator.stop()
