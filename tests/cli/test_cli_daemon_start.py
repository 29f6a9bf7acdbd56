"""`ehr-bridge run` as a real process: refused beside another, quiet logs, one line a run.

A second daemon on the same SQLite file used to start silently, and one whose metrics port
was taken ran on without /healthz; both are now exit 2 at start-up with a message naming
the fix. A daemon's INFO log is one line per flow run, with no APScheduler or Alembic
chatter.
"""

from __future__ import annotations

import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.bridge import Bridge, running_bridge

pytestmark = pytest.mark.slow

FAST_SCHEDULE = """
[connection.schedule]
pull_seconds = 0.5
deliver_seconds = 0.5
collect_seconds = 0.5
push_seconds = 0.5
"""
ANY_PORT = "\n[observability]\nport = 0\n"


def _run(config: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ehr_bridge", "--config", str(config), "run", *args],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def _run_to_end(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ehr_bridge", "--config", str(config), "run", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if text in log.read_text("utf-8", errors="replace"):
            return
        assert process.poll() is None, log.read_text("utf-8", errors="replace")
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never logged:\n{log.read_text('utf-8', errors='replace')}")


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


def _variant(bridge: Bridge, name: str, old: str, new: str) -> Path:
    """A copy of the bridge's config beside it (same database), with one change."""
    text = bridge.config_path.read_text("utf-8")
    assert old in text
    path = bridge.config_path.with_name(name)
    path.write_text(text.replace(old, new), "utf-8")
    return path


def test_a_second_daemon_on_one_sqlite_file_is_refused_unless_allowed(tmp_path: Path) -> None:
    with running_bridge(tmp_path, referrals=2, extra_config=FAST_SCHEDULE + ANY_PORT) as bridge:
        first = _run(bridge.config_path, log=tmp_path / "first.log")
        try:
            _wait_for_line(tmp_path / "first.log", "daemon started", first)
            second = _run_to_end(bridge.config_path)
            message = " ".join(second.stderr.split())
            assert second.returncode == 2, second.stderr
            assert f"another `ehr-bridge run` (pid {first.pid}) is already using this SQLite" in (
                message
            )
            assert "ehr-bridge.db.daemon.lock" in message
            assert "[database] allow_shared_sqlite = true" in message
            assert "daemon started" not in second.stderr

            shared = _variant(
                bridge, "shared.toml", "[database]", "[database]\nallow_shared_sqlite = true"
            )
            third = _run(shared, log=tmp_path / "third.log")
            _wait_for_line(tmp_path / "third.log", "daemon started", third)
            assert _stop(third) == 0
        finally:
            assert _stop(first) == 0
        # the lock went with the first daemon: a new one starts at once
        again = _run(bridge.config_path, log=tmp_path / "again.log")
        _wait_for_line(tmp_path / "again.log", "daemon started", again)
        assert _stop(again) == 0


def test_a_metrics_port_in_use_is_exit_2_naming_the_key_and_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        extra = FAST_SCHEDULE + f"\n[observability]\nport = {port}\n"
        with running_bridge(tmp_path, referrals=1, extra_config=extra) as bridge:
            result = _run_to_end(bridge.config_path)
    message = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr
    assert f"observability.port: port {port} on 127.0.0.1 is already in use" in message
    assert "[observability] port" in message
    assert "daemon started" not in result.stderr


CHATTER = ("Running job", "executed successfully", "Context impl", "Will assume")
RUN_LINE = re.compile(r" (INFO|ERROR) ehr_bridge\.sync\.cycle: (\w+) (done|failed) ")


def test_a_daemon_logs_one_line_per_flow_run_and_no_library_chatter(tmp_path: Path) -> None:
    with running_bridge(tmp_path, referrals=3, extra_config=FAST_SCHEDULE + ANY_PORT) as bridge:
        log = tmp_path / "daemon.log"
        daemon = _run(bridge.config_path, "--log-level", "info", log=log)  # config says DEBUG
        try:
            _wait_for_line(log, "daemon started", daemon)
            time.sleep(3)
        finally:
            assert _stop(daemon) == 0
        database = bridge.config_path.parent / "state" / "ehr-bridge.db"
        with sqlite3.connect(database) as db:
            (runs,) = db.execute("SELECT count(*) FROM run").fetchone()
    lines = log.read_text("utf-8").splitlines()
    assert not [line for line in lines if any(text in line for text in CHATTER)]
    assert not [line for line in lines if " DEBUG " in line]  # --log-level over the config
    run_lines = [line for line in lines if RUN_LINE.search(line)]
    assert runs >= 10 and len(run_lines) == runs
    pull = next(line for line in run_lines if " pull done " in line)
    for field in ("connection=demo-trust", "flow=pull", "seconds=", "seen=", "stored="):
        assert field in pull
    assert "pull page committed" not in log.read_text("utf-8")  # DEBUG now: the run line counts


def test_ordinary_commands_print_no_alembic_chatter(tmp_path: Path) -> None:
    with running_bridge(tmp_path, referrals=1) as bridge:
        for args in (["sync", "--once", "--log-level", "INFO"], ["status"], ["outbox", "list"]):
            result = subprocess.run(
                [sys.executable, "-m", "ehr_bridge", "--config", str(bridge.config_path), *args],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            assert not [text for text in CHATTER if text in result.stderr], result.stderr
