"""Every support command through CliRunner: tables, --json, and each documented exit code."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import pytest
from support_cli_kit import Cli, bridge_cli, runner

from ehr_bridge.cli.app import app
from support.encryption import PLAIN_TEST_STORE


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with bridge_cli(tmp_path_factory.mktemp("commands"), seed=8, referrals=3, hostile=2) as cli:
        yield cli


def first_referral(cli: Cli) -> dict[str, Any]:
    referrals: list[dict[str, Any]] = cli.json("referrals", "list")
    return referrals[0]


def nhs_number_of(cli: Cli, trust_referral_id: str) -> str:
    return str(cli.bridge.simulator.state.get_referral(trust_referral_id)["patient"]["nhs_number"])


# --- referrals show ---------------------------------------------------------------------


def test_show_by_every_kind_of_id_gives_the_same_story(cli: Cli) -> None:
    referral = first_referral(cli)
    number = nhs_number_of(cli, referral["trust_referral_id"])
    grouped = f"{number[:3]} {number[3:6]} {number[6:]}"
    for ref in (referral["id"], referral["trust_referral_id"], number, grouped):
        story = cli.json("referrals", "show", ref)
        assert story["id"] == referral["id"]
    assert story["versions"] and story["deliveries"] and story["write_backs"]
    assert all(
        w["history"] and w["history"][-1]["outcome"] == "written" for w in story["write_backs"]
    )
    table = cli.ok("referrals", "show", referral["trust_referral_id"]).stdout
    assert "timeline (times Europe/London)" in table and "delivered to the provider" in table
    assert number not in table and number not in str(story)


def test_show_never_echoes_an_unknown_nhs_number(cli: Cli) -> None:
    result = cli("referrals", "show", "9990000018")
    assert result.exit_code == 3 and "that NHS number" in result.stderr
    assert "9990000018" not in result.stderr + result.stdout


# --- reconcile ----------------------------------------------------------------------------


def test_reconcile_table_json_and_narrowing(cli: Cli) -> None:
    referral = first_referral(cli)
    assert "in sync" in cli.ok("reconcile").stdout
    (one,) = cli.json("reconcile", "--referral", referral["trust_referral_id"])
    assert one["referral_id"] == referral["id"] and one["verdict"] == "in sync"
    assert cli.json("reconcile", "--since", "2999-01-01") == []
    assert cli.json("reconcile", "--connection", "demo-trust")


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--force"], 2, "--repair"),
        (["--since", "yesterday"], 2, "YYYY-MM-DD"),
        (["--since", "2026-02-30"], 2, "YYYY-MM-DD"),
        (["--referral", "SR9999999"], 3, "no referral"),
        (["--connection", "nope"], 2, "unknown connection"),
    ],
)
def test_reconcile_usage_errors(cli: Cli, args: list[str], code: int, says: str) -> None:
    result = cli("reconcile", *args)
    assert result.exit_code == code and says in result.stderr + result.stdout


def test_reconcile_run_is_audited_with_the_os_user(cli: Cli) -> None:
    cli.ok("reconcile", "--reason", "weekly check")
    last = cli.audit("--action", "reconcile.run")[-1]
    assert last["actor"] == getpass.getuser() and last["reason"] == "weekly check"
    assert last["detail"]["checked"] >= 1 and last["detail"]["repair"] is False


# --- quarantine retry / dismiss ---------------------------------------------------------


def test_quarantine_retry_and_dismiss(cli: Cli) -> None:
    entries = cli.json("quarantine", "list")
    assert len(entries) == 2
    first, second = entries
    unchanged = cli("quarantine", "retry", str(first["id"]), "--reason", "asked", "--json")
    assert unchanged.exit_code == 1 and '"outcome": "unchanged"' in unchanged.stdout
    dismissed = cli("quarantine", "dismiss", str(second["id"]), "--reason", "test record")
    assert dismissed.exit_code == 0 and "dismissed" in dismissed.stdout
    again = cli("quarantine", "dismiss", str(second["id"]), "--reason", "twice")
    assert again.exit_code == 1 and "dismissed" in again.stderr
    assert cli("quarantine", "retry", str(second["id"]), "--reason", "again").exit_code == 1
    shown = cli.json("quarantine", "show", str(second["id"]))
    assert shown["state"] == "dismissed" and shown["closed_at"]
    (audit,) = cli.audit("--action", "quarantine.dismiss")
    assert audit["reason"] == "test record" and audit["detail"]["entry"] == second["id"]


def test_quarantine_retry_of_a_record_still_broken_supersedes_the_entry(cli: Cli) -> None:
    entry = cli.json("quarantine", "list")[0]
    state = cli.bridge.simulator.state
    state.update_referral(entry["record"], {"patient": {"nhs_number": "12345"}})
    result = cli("quarantine", "retry", str(entry["id"]), "--reason", "fixed?")
    assert result.exit_code == 1 and "still fails" in result.stdout
    assert "12345" not in result.stdout + result.stderr
    (newer,) = [e for e in cli.json("quarantine", "list") if e["record"] == entry["record"]]
    assert newer["id"] != entry["id"] and newer["field"] == "patient.nhs_number"
    states = {e["id"]: e["state"] for e in cli.json("quarantine", "list", "--all")}
    assert states[entry["id"]] == "superseded"


@pytest.mark.parametrize(
    "action", [["retry", "999", "--reason", "x"], ["dismiss", "999", "--reason", "x"]]
)
def test_quarantine_actions_on_unknown_entries_exit_3(cli: Cli, action: list[str]) -> None:
    result = cli("quarantine", *action)
    assert result.exit_code == 3 and "no quarantine entry" in result.stderr


def test_quarantine_dismiss_needs_a_reason(cli: Cli) -> None:
    assert cli("quarantine", "dismiss", "1").exit_code == 2
    assert cli("quarantine", "dismiss", "1", "--reason", " ").exit_code == 2


# --- patients -----------------------------------------------------------------------------


def test_patients_show_masks_the_nhs_number(cli: Cli) -> None:
    referral = first_referral(cli)
    number = nhs_number_of(cli, referral["trust_referral_id"])
    for ref in (referral["patient_id"], referral["patient_id"][:12], number, referral["id"]):
        shown = cli.json("patients", "show", ref)
        assert shown["id"] == referral["patient_id"]
    assert shown["nhs_number"] == f"{number[:3]} *** **{number[-2:]}"
    table = cli.ok("patients", "show", referral["patient_id"]).stdout
    assert number not in table and f"**{number[-2:]}" in table


def test_patients_link_and_unlink_with_their_errors(cli: Cli) -> None:
    one, two = [r["patient_id"] for r in cli.json("referrals", "list")][:2]
    assert cli("patients", "show", "no-such-patient").exit_code == 3
    assert cli("patients", "link", one, "no-such-patient", "--reason", "x").exit_code == 3
    assert cli("patients", "link", one, one, "--reason", "x").exit_code == 2
    assert cli("patients", "link", one, two).exit_code == 2  # --reason is required
    assert cli("patients", "unlink", two, "--reason", "x").exit_code == 1  # not linked
    linked = cli.ok("patients", "link", one, two, "--reason", "same person, ticket 9")
    assert "1 referral(s) moved" in linked.stdout
    assert cli.json("patients", "show", two)["linked_to"] == one
    assert cli("patients", "link", one, two, "--reason", "again").exit_code == 1
    cli.ok("patients", "unlink", two, "--reason", "not the same after all")
    assert cli.json("patients", "show", two)["active"] is True
    actions = [(a["action"], a["reason"]) for a in cli.audit("--action", "patient.")]
    assert actions == [
        ("patient.link", "same person, ticket 9"),
        ("patient.unlink", "not the same after all"),
    ]


# --- audit list ---------------------------------------------------------------------------


def test_audit_list_filters_and_errors(cli: Cli) -> None:
    referral = first_referral(cli)
    writes = cli.audit("--referral", referral["trust_referral_id"], "--action", "trust.write")
    assert writes and {w["referral_id"] for w in writes} == {referral["id"]}
    assert all(w["outcome"] == "written" and w["trust_id"] for w in writes)
    assert len(cli.audit("--limit", "2")) == 2
    assert cli.audit("--since", "2999-01-01") == []
    assert "audit entries" in cli.ok("audit", "list", "--limit", "3").stdout
    assert cli("audit", "list", "--since", "01/02/2026").exit_code == 2
    unknown = cli("audit", "list", "--referral", "SR9999999")
    assert unknown.exit_code == 3 and "no referral" in unknown.stderr


# --- no connection, no config ---------------------------------------------------------------


def test_without_a_connection_the_support_commands_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "ehr-bridge.toml"
    config.write_text('[database]\nurl = "sqlite:///state.db"\n' + PLAIN_TEST_STORE)
    base = ["--config", str(config)]
    assert runner.invoke(app, [*base, "reconcile"]).exit_code == 2
    assert runner.invoke(app, [*base, "audit", "list", "--json"]).stdout.strip() == "[]"
    assert runner.invoke(app, [*base, "referrals", "show", "SR1"]).exit_code == 3
    missing = ["--config", str(tmp_path / "absent.toml")]
    for command in (["reconcile"], ["audit", "list"], ["patients", "show", "x"]):
        assert runner.invoke(app, [*missing, *command]).exit_code == 2, command


def plain_trust(options: dict[str, Any], *, base_dir: Path, key: str, provider_code: str) -> Any:
    """A trust adapter that can be pulled from and written to, but not read back."""
    from ehr_bridge.adapters.memory import MemoryTrust

    return MemoryTrust()


def test_a_trust_adapter_that_cannot_read_back_cannot_be_reconciled(
    cli: Cli, tmp_path: Path
) -> None:
    from ehr_bridge.adapters.registry import ALL_WRITES, AdapterSpec, register, unregister

    spec = AdapterSpec(
        "plain-trust",
        frozenset({"trust"}),
        "test_support_commands:plain_trust",
        frozenset({"updated_since"}) | ALL_WRITES,
    )
    text = cli.bridge.config_path.read_text("utf-8").replace(
        'adapter = "iaptus"', 'adapter = "plain-trust"'
    )
    config = cli.bridge.config_path.with_name("plain.toml")
    config.write_text(text, "utf-8")
    entry = cli.json("quarantine", "list")[0]
    register(spec)
    try:
        result = runner.invoke(app, ["--config", str(config), "reconcile"])
        retry_args = ["--config", str(config), "quarantine", "retry", str(entry["id"])]
        retry_args += ["--reason", "fixed at the trust"]
        retry = runner.invoke(app, retry_args)
    finally:
        unregister("plain-trust")
    assert result.exit_code == 2 and "read_items" in result.stderr
    assert retry.exit_code == 2 and "fetch_referral" in retry.stderr
