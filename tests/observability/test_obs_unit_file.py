"""config/ehr-bridge.service starts a command line the CLI really accepts."""

from __future__ import annotations

import shlex
from pathlib import Path

from typer.testing import CliRunner

from ehr_bridge.cli.app import app

UNIT = Path(__file__).resolve().parents[2] / "config" / "ehr-bridge.service"


def _directives() -> dict[str, str]:
    found = {}
    for line in UNIT.read_text("utf-8").splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key] = value
    return found


def test_the_unit_runs_the_daemon_with_json_logs_and_stops_it_gently(tmp_path: Path) -> None:
    unit = _directives()
    program, *args = shlex.split(unit["ExecStart"])
    assert program.endswith("/ehr-bridge")
    assert args[2:] == ["run", "--log-format", "json"]
    assert unit["KillSignal"] == "SIGTERM" and unit["RestartPreventExitStatus"] == "2"
    args[1] = str(tmp_path / "missing.toml")  # the options parse; only the file is missing
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 2
    assert "config file not found" in outcome.stderr
