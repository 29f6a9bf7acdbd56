"""A fast start: commands are imported when run, and the help lists them without importing.

The CPU figures themselves are a benchmark (benchmarks/bench_cli_start.py), not a test: a
shared machine makes timings flaky. What keeps them low is tested here instead: which
modules a fresh process has imported after ``--help`` and after ``status``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ehr_bridge.cli.app import COMMANDS, app
from ehr_bridge.demo import run_demo

runner = CliRunner()
SRC = Path(__file__).resolve().parents[2] / "src"
#: what no command needs just to start
HEAVY = [
    "alembic",
    "apscheduler",
    "fhir.resources",
    "hl7apy",
    "jsonschema",
    "prometheus_client",
    "requests",
    "ehr_bridge.domain",
    "ehr_bridge.mapping",
    "ehr_bridge.reports",
    "ehr_bridge.sim",
    "ehr_bridge.sync",
]
#: and what ``status`` needs besides: the store and the config
STORE = ["sqlalchemy", "sqlmodel", "pydantic", "ehr_bridge.store"]
#: the only CLI modules a start imports
_START = {"ehr_bridge.cli.app", "ehr_bridge.cli.lazy"}
PROBE = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["ehr-bridge", *sys.argv[1:]]
from ehr_bridge.cli.app import main
main()
"""


def _imported_by(*args: str, cwd: Path) -> set[str]:
    """The modules a fresh ``ehr-bridge`` process had imported when it ended."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_help_imports_no_command(tmp_path: Path) -> None:
    modules = _imported_by("--help", cwd=tmp_path)
    assert not {m for m in modules if m.startswith("ehr_bridge.cli.") and m not in _START}
    assert not [m for m in [*HEAVY, *STORE] if m in modules]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("start")
    assert run_demo(workdir, seed=3, referrals=2, hostile=1, say=lambda _line: None).complete
    return workdir


def test_status_imports_the_store_and_nothing_heavy(demo_dir: Path) -> None:
    modules = _imported_by("status", cwd=demo_dir)
    assert all(m in modules for m in STORE)
    assert not [m for m in HEAVY if m in modules]


def test_the_help_lists_every_command_by_its_own_summary() -> None:
    """The root help's lines (from ``COMMANDS``) are the first paragraph of each command's."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    for name, lazy in COMMANDS.items():
        command = lazy.load(name)
        own = (command.short_help or command.help or "").split("\n\n")[0]
        assert " ".join(own.split()) == lazy.summary, name
    outcome = runner.invoke(app, ["--help"], terminal_width=200)
    assert outcome.exit_code == 0
    listed = [line.split()[1] for line in outcome.stdout.splitlines() if line.startswith("│ ")]
    assert [n for n in listed if n in COMMANDS] == list(COMMANDS)


def test_commands_resolve_as_before() -> None:
    """Groups keep their options (help, no_args_is_help); unknown names get 'did you mean'."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    assert set(group.commands) == set(COMMANDS)
    retention = group.commands["retention"]
    assert getattr(retention, "no_args_is_help", False)
    assert group.commands["sim"].help == "The built-in trust simulator."
    outcome = runner.invoke(app, ["statu"])
    assert outcome.exit_code == 2 and "status" in outcome.output
