"""``ehr-bridge sim``: export without serving, and serve in the foreground until Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests
from typer.testing import CliRunner

from ehr_bridge.cli.sim import app
from ehr_bridge.sim import TrustSimulator

runner = CliRunner()


def test_export_writes_the_same_document_as_the_python_api(tmp_path: Path) -> None:
    out = tmp_path / "trust.json"
    result = runner.invoke(
        app, ["export", "--seed", "4", "--referrals", "5", "--hostile", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    expected = TrustSimulator(seed=4, referrals=5, hostile=2).export()
    assert json.loads(out.read_text(encoding="utf-8")) == expected
    assert "Wrote 8 referrals" in result.output


def test_export_to_stdout_is_deterministic() -> None:
    first = runner.invoke(app, ["export", "--seed", "9", "--referrals", "3", "--out", "-"])
    second = runner.invoke(app, ["export", "--seed", "9", "--referrals", "3", "--out", "-"])
    assert first.exit_code == 0
    assert first.stdout == second.stdout
    assert json.loads(first.stdout)["seed"] == 9


def test_negative_counts_are_refused_by_the_cli() -> None:
    result = runner.invoke(app, ["export", "--referrals", "-1", "--out", "-"])
    assert result.exit_code == 2


def test_serve_on_a_taken_port_exits_with_the_config_code() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--port", str(port), "--referrals", "1"])
    assert result.exit_code == 2
    assert "port" in result.output


def test_serve_prints_the_url_uses_the_env_token_and_stops_on_ctrl_c() -> None:
    env = {**os.environ, "SIM_TEST_TOKEN": "from-env", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "ehr_bridge.cli.sim", "serve", "--port", "0"]
    command += ["--referrals", "3", "--token-env", "SIM_TEST_TOKEN"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        base = line.split(" serving at ")[1].split()[0]
        listing = f"{base}/api/v1/referrals"
        assert (
            requests.get(
                listing, headers={"Authorization": "Bearer sim-token"}, timeout=5
            ).status_code
            == 401
        )
        assert requests.get(listing, headers={"Authorization": "Bearer from-env"}, timeout=5).ok
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "stopped" in rest
