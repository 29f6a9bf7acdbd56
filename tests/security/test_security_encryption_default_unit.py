"""The shipped systemd unit does not restart on the CLI's configuration-error exit code.

Every configuration or key problem ends a command with ``EXIT_CONFIG`` (2); the unit must
list exactly that code in ``RestartPreventExitStatus`` so a missing key is not retried
every ``RestartSec`` for ever, while any other failure (exit 1) is still restarted. The
unit is also checked by ``systemd-analyze verify`` where systemd is installed, with its
``ExecStart`` pointed at this virtual environment's ``ehr-bridge`` (systemd refuses a
program that does not exist, and ``/opt/ehr-bridge`` is only there on a real host).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ehr_bridge.cli.context import EXIT_CONFIG, EXIT_FAILED, EXIT_OK

UNIT = Path(__file__).resolve().parents[2] / "config" / "ehr-bridge.service"


def _service_section() -> dict[str, list[str]]:
    """Directives of ``[Service]``, each with every value given (systemd allows repeats)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line:
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_does_not_restart_on_exactly_the_config_error_exit_code() -> None:
    service = _service_section()
    prevent = [word for value in service["RestartPreventExitStatus"] for word in value.split()]
    assert prevent == [str(EXIT_CONFIG)], prevent
    assert service["Restart"] == ["on-failure"]  # a failed run (exit 1) is restarted
    assert str(EXIT_FAILED) not in prevent and str(EXIT_OK) not in prevent
    assert "SuccessExitStatus" not in service  # exit 2 stays a failure the journal shows


def test_the_unit_runs_the_daemon_the_cli_defines() -> None:
    program, *args = shlex.split(_service_section()["ExecStart"][0])
    assert program == "/opt/ehr-bridge/venv/bin/ehr-bridge"
    assert args[0] == "--config" and args[2] == "run"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    ours = Path(sys.executable).parent / "ehr-bridge"
    assert ours.is_file()
    unit = tmp_path / UNIT.name
    unit.write_text(
        UNIT.read_text("utf-8").replace("/opt/ehr-bridge/venv/bin/ehr-bridge", str(ours)),
        "utf-8",
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    about_ours = [line for line in result.stderr.splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not about_ours, result.stderr
