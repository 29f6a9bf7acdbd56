"""Every command that changes something needs --reason, and the audit entry holds it.

docs/support-guide.md promises that each change is recorded with "the --reason you
give": without one each of them is exit 2 naming the option, and nothing changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from ehr_bridge.cli.app import app
from ehr_bridge.retry import RetryPolicy
from ehr_bridge.sim.faults import Fault
from support.bridge import Bridge, running_bridge

runner = CliRunner()


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    """Two referrals pulled (one quarantined), every write-back dead-lettered by a 503."""
    workdir = tmp_path_factory.mktemp("reasons")
    with running_bridge(workdir, seed=21, referrals=2, hostile=1) as bridge:
        bridge.conn.retry = RetryPolicy(max_attempts=1, base_delay=0, max_delay=0)
        writes_fail = bridge.simulator.faults.add(Fault("status", method="POST", times=10**6))
        bridge.cycle()
        writes_fail.times = 0
        assert bridge.store.outbox_rows(state="dead"), "the 503s should have dead-lettered them"
        yield bridge


def _cli(bridge: Bridge, *args: str) -> Result:
    return runner.invoke(app, ["--config", str(bridge.config_path), *args])


def _audit(bridge: Bridge, action: str) -> list[dict[str, Any]]:
    result = _cli(bridge, "audit", "list", "--action", action, "--json")
    assert result.exit_code == 0, result.stderr
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    return entries


def _refused(result: Result) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "--reason" in result.stderr


def _dead(bridge: Bridge, kind: str) -> str:
    return next(r.id for r in bridge.store.outbox_rows(state="dead") if r.kind == kind)


def test_outbox_retry_needs_a_reason_and_records_it(bridge: Bridge) -> None:
    key = _dead(bridge, "care_contact")
    _refused(_cli(bridge, "outbox", "retry", key[:12]))
    _refused(_cli(bridge, "outbox", "retry", key[:12], "--reason", "  "))
    assert bridge.store.outbox_row(key).state == "dead"  # type: ignore[union-attr]
    result = _cli(bridge, "outbox", "retry", key[:12], "--reason", "trust back up, INC100")
    assert result.exit_code == 0 and "re-queued 1 write-back(s)" in result.stdout
    (entry,) = [e for e in _audit(bridge, "outbox.retry") if e["outbox_key"] == key]
    assert entry["reason"] == "trust back up, INC100"


def test_outbox_cancel_needs_a_reason_and_records_it(bridge: Bridge) -> None:
    key = _dead(bridge, "assessment")
    _refused(_cli(bridge, "outbox", "cancel", key))
    result = _cli(bridge, "outbox", "cancel", key, "--reason", "trust asked, INC101")
    assert result.exit_code == 0, result.stderr
    (entry,) = _audit(bridge, "outbox.cancel")
    assert entry["outbox_key"] == key and entry["reason"] == "trust asked, INC101"


def test_quarantine_retry_and_dismiss_need_a_reason_and_record_it(bridge: Bridge) -> None:
    (entry,) = json.loads(_cli(bridge, "quarantine", "list", "--json").stdout)
    _refused(_cli(bridge, "quarantine", "retry", str(entry["id"])))
    _refused(_cli(bridge, "quarantine", "dismiss", str(entry["id"])))
    assert _audit(bridge, "quarantine.") == []
    retried = _cli(bridge, "quarantine", "retry", str(entry["id"]), "--reason", "INC102 fixed?")
    assert retried.exit_code == 1  # not fixed at the trust yet; still an audited action
    dismissed = _cli(bridge, "quarantine", "dismiss", str(entry["id"]), "--reason", "test record")
    assert dismissed.exit_code == 0, dismissed.stderr
    reasons = {e["action"]: e["reason"] for e in _audit(bridge, "quarantine.")}
    assert reasons == {"quarantine.retry": "INC102 fixed?", "quarantine.dismiss": "test record"}


def test_reconcile_repair_needs_a_reason_and_records_it(bridge: Bridge) -> None:
    before = len(_audit(bridge, "reconcile.run"))
    refused = _cli(bridge, "reconcile", "--repair")
    _refused(refused)
    assert "--repair needs --reason" in refused.stderr
    assert len(_audit(bridge, "reconcile.run")) == before  # refused before anything ran
    assert _cli(bridge, "reconcile").exit_code in (0, 1)  # a dry run needs no reason
    repaired = _cli(bridge, "reconcile", "--repair", "--reason", "weekly check, INC103")
    assert repaired.exit_code in (0, 1), repaired.stderr
    runs = _audit(bridge, "reconcile.run")
    assert [r["reason"] for r in runs[before:]] == [None, "weekly check, INC103"]
    assert runs[-1]["detail"]["repair"] is True


def test_patients_link_and_unlink_need_a_reason_and_record_it(bridge: Bridge) -> None:
    referrals = json.loads(_cli(bridge, "referrals", "list", "--json").stdout)
    one, two = sorted({r["patient_id"] for r in referrals})[:2]
    _refused(_cli(bridge, "patients", "link", one, two))
    _refused(_cli(bridge, "patients", "link", one, two, "--reason", ""))
    assert (
        _cli(bridge, "patients", "link", one, two, "--reason", "same person, INC104").exit_code == 0
    )
    _refused(_cli(bridge, "patients", "unlink", two))
    assert _cli(bridge, "patients", "unlink", two, "--reason", "not after all").exit_code == 0
    reasons = [(e["action"], e["reason"]) for e in _audit(bridge, "patient.")]
    assert reasons == [("patient.link", "same person, INC104"), ("patient.unlink", "not after all")]


def test_risk_resolve_needs_a_reason(bridge: Bridge) -> None:
    _refused(_cli(bridge, "risk", "resolve", "zzzz"))
    _refused(_cli(bridge, "risk", "resolve", "zzzz", "--reason", " "))
