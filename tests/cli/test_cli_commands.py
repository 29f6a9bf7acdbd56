"""Every command through Typer's CliRunner, on the state a small demo leaves behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.cli.context import EXIT_NOT_FOUND
from ehr_bridge.demo import run_demo

runner = CliRunner()


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("cli")
    result = run_demo(workdir, seed=2, referrals=5, hostile=3, say=lambda _line: None)
    assert result.complete
    return workdir


def _run(demo_dir: Path, *args: str) -> tuple[int, str]:
    """Exit code and standard output (logs and errors go to standard error)."""
    outcome = runner.invoke(app, ["--config", str(demo_dir / "ehr-bridge.toml"), *args])
    return outcome.exit_code, outcome.stdout


def test_status_json(demo_dir: Path) -> None:
    code, out = _run(demo_dir, "status", "--json")
    assert code == 0
    status = json.loads(out)["demo-trust"]
    assert status["referrals"] == {"pulled": 5, "delivered": 5}
    assert status["quarantined"] == 3
    assert set(status["last_runs"]) == {"pull", "deliver", "collect", "push", "risk"}
    assert status["outbox"]["done"] > 0 and "pending" not in status["outbox"]


def test_status_table(demo_dir: Path) -> None:
    code, out = _run(demo_dir, "status")
    assert code == 0 and "demo-trust" in out and "outbox: done" in out


def test_referrals_list_and_show(demo_dir: Path) -> None:
    code, out = _run(demo_dir, "referrals", "list", "--json")
    assert code == 0
    referrals = json.loads(out)
    assert len(referrals) == 5
    first = referrals[0]
    for ref in (first["id"], first["trust_referral_id"]):
        code, out = _run(demo_dir, "referrals", "show", ref, "--json")
        assert code == 0
        shown = json.loads(out)
        assert shown["id"] == first["id"]
        assert f"ServiceRequest/{first['id']}" in shown["resources"]
        assert {w["kind"] for w in shown["write_backs"]} >= {"care_contact", "referral_status"}
        assert all(w["state"] == "done" and w["trust_id"] for w in shown["write_backs"])
    code, out = _run(demo_dir, "referrals", "show", first["id"])
    assert code == 0 and "write-backs" in out


def test_referrals_show_unknown_id_exits_3(demo_dir: Path) -> None:
    outcome = runner.invoke(
        app, ["--config", str(demo_dir / "ehr-bridge.toml"), "referrals", "show", "no-such"]
    )
    assert outcome.exit_code == 3 and "no referral" in outcome.stderr


def test_outbox_list_by_state(demo_dir: Path) -> None:
    code, out = _run(demo_dir, "outbox", "list", "--state", "done", "--json")
    assert code == 0
    rows = json.loads(out)
    assert rows and all(r["state"] == "done" for r in rows)
    code, out = _run(demo_dir, "outbox", "list", "--state", "dead", "--json")
    assert code == 0 and json.loads(out) == []
    code, out = _run(demo_dir, "outbox", "list")
    assert code == 0 and "outbox rows" in out


def test_quarantine_list_and_show(demo_dir: Path) -> None:
    code, out = _run(demo_dir, "quarantine", "list", "--json")
    assert code == 0
    entries = json.loads(out)
    assert len(entries) == 3 and all(e["field"] and e["reason"] for e in entries)
    code, out = _run(demo_dir, "quarantine", "show", str(entries[0]["id"]), "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["field"] == entries[0]["field"] and "payload" not in shown
    code, out = _run(demo_dir, "quarantine", "show", str(entries[0]["id"]), "--payload", "--json")
    assert code == 0 and "payload" in json.loads(out)
    code, out = _run(demo_dir, "quarantine", "list")
    assert code == 0 and "quarantined" in out


def test_quarantine_show_unknown_exits_3(demo_dir: Path) -> None:
    code, _ = _run(demo_dir, "quarantine", "show", "99999")
    assert code == 3


def test_missing_config_exits_2(tmp_path: Path) -> None:
    outcome = runner.invoke(app, ["--config", str(tmp_path / "nope.toml"), "status"])
    assert outcome.exit_code == 2
    assert "config file not found" in outcome.output


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "ehr-bridge.toml"
    config.write_text(
        '[[connection]]\nname = "Bad Name"\nmapping = "x.yaml"\n'
        '[connection.provider_org]\ncode = "P"\n'
        '[connection.trust]\nadapter = "iaptus"\n[connection.provider]\nadapter = "folder"\n'
    )
    outcome = runner.invoke(app, ["--config", str(config), "sync", "--once"])
    assert outcome.exit_code == 2
    assert "connection[0].name" in outcome.output


def test_unknown_adapter_suggests_the_fix(demo_dir: Path, tmp_path: Path) -> None:
    text = (
        (demo_dir / "ehr-bridge.toml")
        .read_text()
        .replace('adapter = "iaptus"', 'adapter = "iaptsu"')
    )
    text = text.replace(
        'mapping = "mappings/iaptus.yaml"', f'mapping = "{demo_dir}/mappings/iaptus.yaml"'
    )
    text = text.replace(
        'token_file = "secrets/trust-token"', f'token_file = "{demo_dir}/secrets/trust-token"'
    )
    config = tmp_path / "ehr-bridge.toml"
    config.write_text(text)
    outcome = runner.invoke(app, ["--config", str(config), "sync", "--once"])
    assert outcome.exit_code == 2
    assert "did you mean 'iaptus'" in outcome.output
    assert "connection[0].trust.adapter" in outcome.output


def test_sync_once_against_a_stopped_trust_reports_failure(demo_dir: Path) -> None:
    # the demo's simulator is gone: pull fails, is recorded, the command exits 1
    code, out = _run(demo_dir, "sync", "--once", "--flow", "pull", "--json")
    assert code == 1
    report = json.loads(out)["demo-trust"][0]
    assert "error" in report["pull"]
    code, out = _run(demo_dir, "status", "--json")
    assert "pull" in json.loads(out)["demo-trust"]["last_error"]


def test_sync_rejects_unknown_flow(demo_dir: Path) -> None:
    outcome = runner.invoke(
        app, ["--config", str(demo_dir / "ehr-bridge.toml"), "sync", "--once", "--flow", "pul"]
    )
    assert outcome.exit_code == 2 and "unknown flow" in outcome.output


def test_adapters_list() -> None:
    outcome = runner.invoke(app, ["adapters", "list", "--json"])
    assert outcome.exit_code == 0
    names = {a["name"]: a["roles"] for a in json.loads(outcome.stdout)}
    assert names["folder"] == ["provider"] and names["iaptus"] == ["trust"]


def test_risk_list_shows_where_each_risk_stands_and_resolve_closes_one(demo_dir: Path) -> None:
    code, out = _run(demo_dir, "risk", "list", "--json")
    assert code == 0
    risks = json.loads(out)
    assert risks, "the demo's PHQ-9 answers raised no risk"
    assert {r["state"] for r in risks} == {"delivered"}  # at the trust, not yet acknowledged
    assert all(r["trust_id"] and r["level"] == "urgent" for r in risks)
    code, table = _run(demo_dir, "risk", "list")
    assert code == 0 and f"{len(risks)} risks (open)" in table
    first = risks[0]["id"]
    code, out = _run(demo_dir, "risk", "resolve", first[:12], "--reason", "duty team phoned")
    assert code == 0 and first in out
    code, out = _run(demo_dir, "risk", "list", "--json")
    assert first not in {r["id"] for r in json.loads(out)}
    code, out = _run(demo_dir, "risk", "list", "--state", "all", "--json")
    assert {r["id"]: r["state"] for r in json.loads(out)}[first] == "resolved"
    code, out = _run(demo_dir, "audit", "list", "--action", "risk.", "--json")
    assert [e["reason"] for e in json.loads(out)] == ["duty team phoned"]
    code, out = _run(demo_dir, "status", "--json")
    assert json.loads(out)["demo-trust"]["risks"]["open"] == len(risks) - 1


def test_risk_commands_refuse_what_they_do_not_know(demo_dir: Path) -> None:
    assert _run(demo_dir, "risk", "list", "--state", "opne")[0] == 2
    assert _run(demo_dir, "risk", "list", "--connection", "nope")[0] == 2
    assert _run(demo_dir, "risk", "resolve", "zzzz", "--reason", "x")[0] == EXIT_NOT_FOUND
    assert _run(demo_dir, "risk", "resolve", "zzzz")[0] == 2  # a reason is required
