"""`ehr-bridge doctor` against a good setup and against each way an installation breaks.

The good setup is a real bridge (the trust simulator in-process on loopback, the demo's
config, keyring, token file, SQLite store and provider folder); each broken setup changes
one thing in it. Every test also scans everything doctor printed for the trust token and
the keyring's content: neither may ever appear.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ehr_bridge.cli.app import app
from ehr_bridge.cli.context import EXIT_CONFIG
from ehr_bridge.config import load_config
from ehr_bridge.demo import KEYRING_FILE, TOKEN_FILE, prepare_workdir
from ehr_bridge.security.crypto import KeyRing
from ehr_bridge.sim import TrustSimulator
from support.bridge import TOKEN, running_bridge
from support.encryption import write_keyring

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
SHIPPED_UNIT = ROOT / "config" / "ehr-bridge.service"
STATUSES = {"PASS", "WARN", "FAIL"}


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    def lines(self, status: str) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith(status + "  ")]

    def line(self, status: str, where: str) -> str:
        """The one line of ``status`` starting ``<connection> <check>:`` (``where``)."""
        found = [line for line in self.lines(status) if line[6:].startswith(where + ":")]
        assert len(found) == 1, f"{status} {where}: {found}\n{self.stdout}"
        return found[0]


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A good setup: simulator running, store created, provider folder laid out."""
    with running_bridge(tmp_path / "bridge") as bridge:
        yield bridge.config_path.parent


def _unit(workdir: Path, **changes: str) -> Path:
    """The shipped unit, running this config, allowed to write this work folder."""
    text = SHIPPED_UNIT.read_text("utf-8")
    text = text.replace("/etc/ehr-bridge/ehr-bridge.toml", str(workdir / "ehr-bridge.toml"))
    text = text.replace(
        "ReadWritePaths=/var/lib/ehr-bridge /var/log/ehr-bridge", f"ReadWritePaths={workdir}"
    )
    for name, value in changes.items():
        lines = [
            f"{name}={value}" if line.startswith(f"{name}=") else line for line in text.splitlines()
        ]
        text = "\n".join(lines)
    path = workdir / "ehr-bridge.service"
    path.write_text(text, "utf-8")
    return path


def _secrets(workdir: Path) -> list[str]:
    found = [TOKEN]
    for name in (TOKEN_FILE, KEYRING_FILE):
        path = workdir / name
        if path.exists():
            found += [part for part in path.read_text("utf-8").split() if len(part) > 8]
    return found


def _doctor(workdir: Path, *args: str, unit: Path | None = None) -> Outcome:
    unit_args = ["--unit", str(unit or _unit(workdir))]
    secrets = _secrets(workdir)  # before the test's change could remove them
    result = runner.invoke(
        app, ["--config", str(workdir / "ehr-bridge.toml"), "doctor", *unit_args, *args]
    )
    outcome = Outcome(result.exit_code, result.stdout, result.stderr)
    for secret in secrets:
        assert secret not in outcome.stdout and secret not in outcome.stderr
    return outcome


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_good_setup_passes_every_check(workdir: Path) -> None:
    outcome = _doctor(workdir)
    assert outcome.code == 0, outcome.stdout
    warnings = [line for line in outcome.lines("WARN") if not line.startswith("WARN  - disk:")]
    assert not warnings and not outcome.lines("FAIL"), outcome.stdout
    for where in ("- config", "- keys", "- database", "- disk", "- systemd"):
        assert any(f"  {where}:" in line for line in outcome.stdout.splitlines()), where
    for check in ("mapping", "token", "tls", "provider", "config", "trust"):
        outcome.line("PASS", f"demo-trust {check}")
    assert "answered an authenticated referral listing" in outcome.stdout
    assert "RestartPreventExitStatus=2" in outcome.line("PASS", "- systemd")
    assert outcome.stdout.splitlines()[-1].startswith("doctor: ")
    assert " 0 FAIL" in outcome.stdout.splitlines()[-1]


def test_json_lists_every_check_with_its_fix(workdir: Path) -> None:
    outcome = _doctor(workdir, "--json")
    assert outcome.code == 0
    checks = json.loads(outcome.stdout)
    assert isinstance(checks, list) and checks
    for check in checks:
        assert set(check) == {"connection", "check", "status", "message", "fix"}
        assert check["status"] in STATUSES
        assert check["fix"] or check["status"] == "PASS"
    assert {c["connection"] for c in checks} == {"-", "demo-trust"}
    trust = [c for c in checks if c["connection"] == "demo-trust" and c["check"] == "trust"]
    assert [c["status"] for c in trust] == ["PASS"]


def test_the_operations_guide_names_every_check(workdir: Path) -> None:
    checks = {c["check"] for c in json.loads(_doctor(workdir, "--json").stdout)}
    guide = (ROOT / "docs" / "operations.md").read_text("utf-8")
    section = guide.split("## Check an installation: `ehr-bridge doctor`", 1)[1].split("\n## ")[0]
    assert set(re.findall(r"^\| `([a-z]+)` \|", section, re.M)) == checks


def test_a_missing_key_file_fails_with_the_fix(workdir: Path) -> None:
    (workdir / KEYRING_FILE).unlink()
    outcome = _doctor(workdir)
    assert outcome.code == 1
    line = outcome.line("FAIL", "- keys")
    assert str(workdir / KEYRING_FILE) in line and "security.encryption_key_file" in line
    assert "— a new store: `ehr-bridge keys generate`" in line and "backup" in line
    assert "schema at" in outcome.line("PASS", "- database")


def test_a_world_readable_key_file_is_a_warning_with_chmod(workdir: Path) -> None:
    keyring = workdir / KEYRING_FILE
    keyring.chmod(0o644)
    (workdir / TOKEN_FILE).chmod(0o640)
    outcome = _doctor(workdir)
    assert outcome.code == 0, outcome.stdout  # a finding, not a stop: the daemon still runs
    line = outcome.line("WARN", "- keys")
    assert f"{keyring} (security.encryption_key_file)" in line and "mode 0644" in line
    assert line.endswith(f"— chmod 600 {keyring}")
    token = outcome.line("WARN", "demo-trust token")
    assert "mode 0640" in token and token.endswith(f"chmod 600 {workdir / TOKEN_FILE}")
    assert "open to other users" not in outcome.stderr  # a check, not also a log warning


def test_a_wrong_token_fails_naming_the_token_file(workdir: Path) -> None:
    (workdir / TOKEN_FILE).write_text("not-the-token-the-trust-issued", "utf-8")
    outcome = _doctor(workdir)
    assert outcome.code == 1
    line = outcome.line("FAIL", "demo-trust trust")
    assert "refused our credentials" in line and "HTTP 401" in line
    assert f"check the token in {workdir / TOKEN_FILE} (connection[0].trust.token_file)" in line


def test_an_unreachable_trust_fails_naming_host_and_base_url(workdir: Path) -> None:
    config = workdir / "ehr-bridge.toml"
    port = _closed_port()
    base_url = load_config(config).connection[0].trust.options()["base_url"]
    closed = f"http://127.0.0.1:{port}/api/v1"
    config.write_text(config.read_text("utf-8").replace(base_url, closed), "utf-8")
    outcome = _doctor(workdir, "--timeout", "2")
    assert outcome.code == 1
    line = outcome.line("FAIL", "demo-trust trust")
    assert f"cannot connect to 127.0.0.1:{port}" in line
    assert f"check connection[0].trust.base_url ({closed})" in line


def test_a_trust_that_never_answers_fails_within_the_deadline(workdir: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts (the kernel does), never answers
    port = listener.getsockname()[1]
    try:
        config = workdir / "ehr-bridge.toml"
        base_url = load_config(config).connection[0].trust.options()["base_url"]
        config.write_text(
            config.read_text("utf-8").replace(base_url, f"http://127.0.0.1:{port}/api"), "utf-8"
        )
        outcome = _doctor(workdir, "--timeout", "0.5")
    finally:
        listener.close()
    assert outcome.code == 1
    line = outcome.line("FAIL", "demo-trust trust")
    assert f"no answer from 127.0.0.1:{port} within 0.5 s" in line and "base_url" in line


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("transform: [string, strip]", "transform: [string, strp]"), "strp"),
        (
            ("    trust_referral_id: {path: id, transform: [string, strip], required: true}\n", ""),
            "no rule for required target(s) trust_referral_id",
        ),
    ],
    ids=["unknown-transform", "missing-required-rule"],
)
def test_a_bad_mapping_fails_with_its_key(
    workdir: Path, change: tuple[str, str], said: str
) -> None:
    mapping = workdir / "mappings" / "iaptus.yaml"
    text = mapping.read_text("utf-8")
    assert change[0] in text
    mapping.write_text(text.replace(change[0], change[1], 1), "utf-8")
    outcome = _doctor(workdir)
    assert outcome.code == 1
    line = outcome.line("FAIL", "demo-trust mapping")
    assert said in line and str(mapping) in line
    assert f"`ehr-bridge mapping check {mapping}`" in line
    assert not [line for line in outcome.lines("FAIL") if " config:" in line]  # said once
    outcome.line("PASS", "demo-trust trust")  # the trust is still asked


def test_a_code_map_missing_our_codes_fails_as_mapping_check_does(workdir: Path) -> None:
    mapping = workdir / "mappings" / "iaptus.yaml"
    text = mapping.read_text("utf-8")
    mapping.write_text(text.replace('    "gad7": "445455005"\n', ""), "utf-8")
    outcome = _doctor(workdir)
    assert outcome.code == 1
    assert "gad7" in outcome.line("FAIL", "demo-trust mapping")


def test_a_token_variable_that_is_not_set_fails_with_the_environment_fix(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EHR_BRIDGE_DOCTOR_TOKEN", raising=False)
    config = workdir / "ehr-bridge.toml"
    text = config.read_text("utf-8")
    config.write_text(
        text.replace('token_file = "secrets/trust-token"', 'token_env = "EHR_BRIDGE_DOCTOR_TOKEN"')
    )
    outcome = _doctor(workdir)
    assert outcome.code == 1
    line = outcome.line("FAIL", "demo-trust token")
    assert "EHR_BRIDGE_DOCTOR_TOKEN (connection[0].trust.token_env) is not set" in line
    assert "EnvironmentFile" in line
    assert not [line for line in outcome.lines("FAIL") if "demo-trust trust" in line]
    monkeypatch.setenv("EHR_BRIDGE_DOCTOR_TOKEN", TOKEN)
    outcome = _doctor(workdir)
    assert outcome.code == 0, outcome.stdout
    assert "environment variable EHR_BRIDGE_DOCTOR_TOKEN (set)" in outcome.stdout


def test_a_unit_that_restarts_a_config_error_fails(workdir: Path) -> None:
    unit = _unit(workdir, RestartPreventExitStatus="1")
    outcome = _doctor(workdir, unit=unit)
    assert outcome.code == 1
    line = outcome.line("FAIL", "- systemd")
    assert "RestartPreventExitStatus is 1" in line and f"exits {EXIT_CONFIG}" in line
    assert line.endswith(f"— set RestartPreventExitStatus={EXIT_CONFIG}")


def test_a_unit_that_cannot_write_the_state_folder_fails(workdir: Path) -> None:
    unit = _unit(workdir, ReadWritePaths="/var/lib/ehr-bridge /var/log/ehr-bridge")
    outcome = _doctor(workdir, unit=unit)
    assert outcome.code == 1
    line = outcome.line("FAIL", "- systemd")
    assert f"state folder {workdir / 'state'}" in line and "ReadWritePaths" in line


def test_the_shipped_unit_passes_the_exit_code_check(workdir: Path) -> None:
    outcome = _doctor(workdir, unit=SHIPPED_UNIT)
    assert "RestartPreventExitStatus=2" in outcome.line("PASS", "- systemd")
    # it runs /etc/ehr-bridge/ehr-bridge.toml, not this config: said, and paths not judged
    assert "run doctor with --config /etc/ehr-bridge/ehr-bridge.toml" in outcome.line(
        "WARN", "- systemd"
    )
    assert outcome.code == 0


def test_a_config_that_cannot_be_read_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "ehr-bridge.toml"
    config.write_text("[[connection]]\nname = 'Bad Name'\n", "utf-8")
    result = runner.invoke(app, ["--config", str(config), "doctor"])
    assert result.exit_code == EXIT_CONFIG
    assert result.stdout.startswith("FAIL  - config: connection[0].")
    result = runner.invoke(app, ["--config", str(tmp_path / "none.toml"), "doctor", "--json"])
    assert result.exit_code == EXIT_CONFIG
    (check,) = json.loads(result.stdout)
    assert check["status"] == "FAIL" and "config file not found" in check["message"]
    assert "--config" in check["fix"]


def test_an_unknown_connection_exits_2_with_the_known_names(workdir: Path) -> None:
    outcome = _doctor(workdir, "--connection", "no-such-trust")
    assert outcome.code == EXIT_CONFIG
    assert "unknown connection (known: demo-trust)" in outcome.stderr
    outcome = _doctor(workdir, "--connection", "demo-trust", "--json")
    assert outcome.code == 0
    assert {c["connection"] for c in json.loads(outcome.stdout)} == {"-", "demo-trust"}


def test_a_fresh_install_warns_and_creates_nothing(tmp_path: Path) -> None:
    simulator = TrustSimulator(seed=1, referrals=2, token=TOKEN)
    base_url = simulator.start()
    try:
        config = prepare_workdir(tmp_path / "new", base_url, TOKEN)
        workdir = config.parent
        outcome = _doctor(workdir)
    finally:
        simulator.stop()
    assert outcome.code == 0, outcome.stdout
    assert "no state database yet" in outcome.line("WARN", "- database")
    assert "does not exist yet" in outcome.line("WARN", "demo-trust provider")
    assert "not built yet" in outcome.line("WARN", "demo-trust config")
    outcome.line("PASS", "demo-trust trust")
    assert not (workdir / "state").exists() and not (workdir / "provider").exists()


def test_a_provider_subfolder_replaced_by_a_link_fails(workdir: Path, tmp_path: Path) -> None:
    sessions = workdir / "provider" / "sessions"
    for sub in ("processed", "rejected"):
        (sessions / sub).rmdir()
    sessions.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, sessions)
    outcome = _doctor(workdir)
    assert outcome.code == 1
    line = outcome.line("FAIL", "demo-trust provider")
    assert f"{sessions} is a symbolic link" in line and "real folder" in line


def test_a_keyring_that_cannot_open_the_store_fails_naming_the_key(tmp_path: Path) -> None:
    with running_bridge(tmp_path / "bridge", referrals=2) as bridge:
        bridge.cycle()  # payloads sealed with the demo's key
        workdir = bridge.config_path.parent
        keyring = workdir / KEYRING_FILE
        sealed_with = KeyRing.parse(keyring.read_text("utf-8")).active_id
        keyring.unlink()
        write_keyring(workdir, KEYRING_FILE)  # another key: the store's is gone
        outcome = _doctor(workdir)
    assert outcome.code == 1, outcome.stdout
    line = outcome.line("FAIL", "- database")
    assert f"the store holds payloads encrypted with key {sealed_with}" in line
    assert "restore the keyring that holds those keys from its backup" in line
