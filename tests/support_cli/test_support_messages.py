"""Failures that say what to do: a refused token, an old error, /healthz's code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support_cli_kit import Cli, bridge_cli

from ehr_bridge.config import ScheduleConfig
from ehr_bridge.observability import HealthChecker, RunCache
from ehr_bridge.sim import Fault

PULL = "/api/v1/referrals"


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with bridge_cli(tmp_path_factory.mktemp("messages"), seed=4, referrals=2) as cli:
        yield cli


def health(cli: Cli) -> dict[str, Any]:
    schedules = {cli.bridge.conn.name: ScheduleConfig()}
    checker = HealthChecker(cli.bridge.store, schedules, RunCache(cli.bridge.store, ttl=0))
    verdict: dict[str, Any] = checker.check().as_json()["connections"]["demo-trust"]
    return verdict


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_names_the_key_that_holds_it(cli: Cli, status: int) -> None:
    cli.bridge.simulator.faults.add(
        Fault("status", method="GET", path=PULL, status=status, times=9)
    )
    try:
        result = cli("sync", "--once", "--flow", "pull")
    finally:
        cli.bridge.simulator.faults.clear()
    assert result.exit_code == 1
    said = " ".join(result.stdout.split())
    assert f"HTTP {status}" in said
    assert (
        "check the token in the file secrets/trust-token (connection[0].trust.token_file)" in said
    )
    assert "test-token" not in result.stdout + result.stderr
    failure = cli.json("status")["demo-trust"]["last_failure"]
    assert failure["code"] == "auth_refused" and failure["current"]
    verdict = health(cli)
    assert "pull: failed (auth_refused)" in verdict["problems"]
    assert verdict["flows"]["pull"]["code"] == "auth_refused"


def test_status_marks_an_error_old_once_the_flow_runs_fine_again(cli: Cli) -> None:
    cli.bridge.simulator.faults.add(Fault("status", method="GET", path=PULL, status=401, times=9))
    try:
        assert cli("sync", "--once", "--flow", "pull").exit_code == 1
    finally:
        cli.bridge.simulator.faults.clear()
    now = " ".join(cli.ok("status").stdout.split())
    assert "last error: pull at " in now and "its latest run [auth_refused]" in now
    cli.ok("sync", "--once", "--flow", "pull")
    text = " ".join(cli.ok("status").stdout.split())
    assert "last error (old): pull at " in text and "pull has run fine since, last at" in text
    assert "{" not in text and "'" not in text  # plain text, no Python dict reprs
    failure = cli.json("status")["demo-trust"]["last_failure"]
    assert failure["current"] is False and failure["succeeded_since"] >= failure["at"]
    assert "pull: failed" not in json.dumps(health(cli))
