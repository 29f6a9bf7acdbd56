"""`ehr-bridge backfill` through CliRunner: results, resume, and every error path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from support.bridge import Bridge, running_bridge

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[Bridge]:
    with running_bridge(tmp_path, seed=6, referrals=25, hostile=1) as running:
        yield running


def _run(bridge: Bridge, *args: str) -> tuple[int, str, str]:
    outcome = runner.invoke(app, ["--config", str(bridge.config_path), "backfill", *args])
    return outcome.exit_code, outcome.stdout, outcome.stderr


def test_backfill_json_then_resume(bridge: Bridge) -> None:
    args = ("-c", "demo-trust", "--since", "2026-01-01", "--json")
    code, out, _ = _run(bridge, *args)
    assert code == 0
    first = json.loads(out)
    assert first["complete"] is True and first["resumed_from"] is None
    assert (first["stored"], first["quarantined"]) == (25, 1)
    code, out, _ = _run(bridge, *args)
    again = json.loads(out)
    assert again["resumed_from"] == first["cursor"] and again["stored"] == 0


def test_backfill_prints_a_summary_and_draws_a_bar(bridge: Bridge) -> None:
    code, out, err = _run(bridge, "-c", "demo-trust", "--since", "2026-06-30T12:00:00Z")
    assert code == 0
    assert "backfill of demo-trust complete: 26 seen, 25 stored" in out
    assert "records" in err and "/s" in err and "ETA" in err


@pytest.mark.parametrize(
    ("since", "message"),
    [("yesterday", "YYYY-MM-DD"), ("2026-13-01", "YYYY-MM-DD"), ("2999-01-01", "future")],
)
def test_bad_dates_are_usage_errors(bridge: Bridge, since: str, message: str) -> None:
    code, _, err = _run(bridge, "-c", "demo-trust", "--since", since)
    assert code == 2
    assert message in err


def test_unknown_connection_is_a_configuration_error(bridge: Bridge) -> None:
    code, _, err = _run(bridge, "-c", "nope", "--since", "2026-01-01")
    assert code == 2
    assert "unknown connection" in err and "demo-trust" in err


def test_a_second_backfill_of_one_connection_is_refused(bridge: Bridge) -> None:
    assert bridge.store.take_flow_lease("demo-trust", "backfill", "otherhost:1", 600)
    code, _, err = _run(bridge, "-c", "demo-trust", "--since", "2026-01-01", "--no-progress")
    assert code == 1
    assert "another backfill is running" in err
    assert bridge.store.list_referrals("demo-trust") == []
