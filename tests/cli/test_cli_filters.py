"""A typo in a filter is exit 2 naming the option, a close match and the known values.

Before, ``outbox list --state deadd`` printed "0 outbox rows" and exit 0, which reads as
"nothing dead". Every listing and every command that takes ``--connection`` now checks
its values against what exists before reading anything.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.demo import run_demo
from ehr_bridge.store import AUDIT_ACTIONS

runner = CliRunner()
SRC = Path(__file__).resolve().parents[2] / "src" / "ehr_bridge"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("filters")
    result = run_demo(workdir, seed=4, referrals=2, hostile=1, say=lambda _line: None)
    assert result.complete
    return workdir


def _run(demo_dir: Path, *args: str) -> tuple[int, str, str]:
    outcome = runner.invoke(app, ["--config", str(demo_dir / "ehr-bridge.toml"), *args])
    return outcome.exit_code, outcome.stdout, outcome.stderr


KNOWN_STATES = "(known: pending, in_flight, done, dead, cancelled)"
KNOWN_CONNECTIONS = "(known: demo-trust)"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["outbox", "list", "--state", "deadd"],
            f"--state: unknown state 'deadd'; did you mean 'dead'? {KNOWN_STATES}",
        ),
        (["outbox", "list", "--connection", "nope"], "unknown connection 'nope'"),
        (
            ["referrals", "list", "--connection", "nope"],
            f"--connection: unknown connection 'nope' {KNOWN_CONNECTIONS}",
        ),
        (
            ["quarantine", "list", "--connection", "demo-trus"],
            "--connection: unknown connection 'demo-trus'; did you mean 'demo-trust'?",
        ),
        (["quarantine", "list", "--all", "-c", "nope"], KNOWN_CONNECTIONS),
        (["risk", "list", "--state", "opne"], "did you mean 'open'? (known: open, overdue, all)"),
        (["risk", "list", "--connection", "nope"], KNOWN_CONNECTIONS),
        (["audit", "list", "--connection", "nope"], KNOWN_CONNECTIONS),
        (["audit", "list", "--action", "nope"], "--action: unknown action 'nope' (known: "),
        (["audit", "list", "--action", "outbox.retyr"], "did you mean 'outbox.retry'?"),
        (["report", "outcomes", "--connection", "nope"], KNOWN_CONNECTIONS),
        (["report", "all", "--connection", "nope", "--json"], KNOWN_CONNECTIONS),
        (["sync", "--once", "--connection", "nope"], KNOWN_CONNECTIONS),
        (["sync", "--once", "--flow", "pul"], "--flow: unknown flow 'pul'; did you mean 'pull'?"),
        (["run", "--connection", "demo-trust2"], "did you mean 'demo-trust'?"),
        (["backfill", "-c", "nope", "--since", "2026-01-01"], KNOWN_CONNECTIONS),
        (["reconcile", "--connection", "nope"], KNOWN_CONNECTIONS),
        (["outbox", "retry", "--all-dead", "-c", "nope", "--reason", "x"], KNOWN_CONNECTIONS),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_an_unknown_filter_value_is_exit_2_with_the_known_values(
    demo_dir: Path, args: list[str], says: str
) -> None:
    code, out, err = _run(demo_dir, *args)
    assert code == 2, (out, err)
    assert says in " ".join(err.split())
    assert "0 outbox rows" not in out and "0 referrals" not in out


def test_the_filters_that_exist_still_filter(demo_dir: Path) -> None:
    for args in (
        ["outbox", "list", "--state", "done", "--connection", "demo-trust"],
        ["referrals", "list", "--connection", "demo-trust"],
        ["quarantine", "list", "--connection", "demo-trust"],
        ["audit", "list", "--action", "recon"],  # a prefix of reconcile.*
        ["audit", "list", "--action", "trust.write", "-c", "demo-trust"],
    ):
        code, _out, err = _run(demo_dir, *args, "--json")
        assert code == 0, (args, err)


def test_a_mistyped_nhs_number_is_not_echoed(demo_dir: Path) -> None:
    code, out, err = _run(demo_dir, "referrals", "list", "--connection", "943 476 5919")
    assert code == 2 and "unknown connection that NHS number" in err
    assert "943 476 5919" not in out + err


def _literal_actions() -> set[str]:
    """Every audit action named by a literal in the source (``identity.*`` is built)."""
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in (
                "AuditEntry",
                "_entry",
            ):
                first = node.args[0] if node.args else None
                if first is None:
                    first = next((k.value for k in node.keywords if k.arg == "action"), None)
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
    return found


def test_audit_actions_lists_every_action_the_code_records() -> None:
    literal = _literal_actions()
    assert literal, "no audit action found in the source: the scan is broken"
    assert literal <= set(AUDIT_ACTIONS)
    identity = {a for a in AUDIT_ACTIONS if a.startswith("identity.")}
    kinds = re.findall(r'"(trust_merge|patient_changed|nhs_number_\w+)"', _identity_source())
    assert identity == {f"identity.{kind}" for kind in kinds}


def _identity_source() -> str:
    return (SRC / "store" / "identity.py").read_text("utf-8")
