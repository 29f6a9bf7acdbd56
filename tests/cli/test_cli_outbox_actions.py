"""`outbox retry` and `outbox cancel`, from a dead letter to a written item."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.retry import RetryPolicy
from ehr_bridge.sim.faults import Fault
from support.bridge import running_bridge

runner = CliRunner()


def _cli(config: Path, *args: str) -> tuple[int, str]:
    outcome = runner.invoke(app, ["--config", str(config), *args])
    return outcome.exit_code, outcome.stdout


def test_dead_letters_are_retried_and_cancelled_from_the_cli(tmp_path: Path) -> None:
    with running_bridge(tmp_path, seed=13, referrals=2) as bridge:
        bridge.conn.retry = RetryPolicy(max_attempts=1, base_delay=0, max_delay=0)
        writes_fail = bridge.simulator.faults.add(Fault("status", method="POST", times=10**6))
        bridge.cycle()  # every write answers 503: with one attempt each, all are dead letters
        dead = bridge.store.outbox_rows(state="dead")
        assert dead, "the faults should have dead-lettered the write-backs"
        code, out = _cli(bridge.config_path, "outbox", "list", "--state", "dead", "--json")
        assert code == 0 and len(json.loads(out)) == len(dead)

        # cancel a score: nothing depends on it (cancelling a contact would also stop its note)
        victim = next(r.id for r in dead if r.kind == "assessment")
        code, out = _cli(
            bridge.config_path, "outbox", "cancel", victim[:12], "--reason", "trust asked"
        )
        assert code == 0 and "cancelled" in out
        assert bridge.store.outbox_row(victim).state == "cancelled"  # type: ignore[union-attr]

        writes_fail.times = 0
        code, out = _cli(
            bridge.config_path, "outbox", "retry", "--all-dead", "--reason", "trust back, INC42"
        )
        assert code == 0 and f"re-queued {len(dead) - 1}" in out
        retried = bridge.store.audit_events(action="outbox.retry")
        assert len(retried) == len(dead) - 1
        assert {e.reason for e in retried} == {"trust back, INC42"}
        bridge.conn.retry = RetryPolicy(max_attempts=5, base_delay=0, max_delay=0)
        bridge.settle()
        states = bridge.store.outbox_counts(bridge.conn.name)
        assert states.get("dead", 0) == 0 and states["cancelled"] == 1


def test_retry_needs_keys_or_all_dead(tmp_path: Path) -> None:
    with running_bridge(tmp_path, seed=14, referrals=1) as bridge:
        code, _out = _cli(bridge.config_path, "outbox", "retry", "--reason", "x")
        assert code == 2
        code, _ = _cli(bridge.config_path, "outbox", "retry", "nosuchkey", "--reason", "x")
        assert code == 3
        code, _ = _cli(bridge.config_path, "outbox", "cancel", "nosuchkey", "--reason", "x")
        assert code == 3
