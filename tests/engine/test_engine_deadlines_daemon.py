"""Deadlines and stop through the real processes: `ehr-bridge run` and `sync --once`.

Two connections share one config: ``demo-trust`` on the trust simulator, and
``slow-trust`` on a trust that answers one byte a second or never answers
(``support.hostile_peer``). The slow one must never delay the other, SIGTERM must end
either process within 10 s whatever the slow trust does, and a daemon whose database
cannot be opened yet must wait, say why, and start once it can.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from ehr_bridge.config import load_config
from ehr_bridge.security.keyring import open_store
from support.bridge import Bridge, running_bridge
from support.hostile_peer import HostilePeer, Mode

pytestmark = pytest.mark.slow

#: the promise of docs/operations.md
SIGTERM_SECONDS = 10.0
REFERRALS = 3

SLOW_CONNECTION = """
[connection.schedule]
pull_seconds = 0.5
deliver_seconds = 0.5
collect_seconds = 0.5
push_seconds = 0.5

[[connection]]
name = "slow-trust"
test_connection = true
mapping = "mappings/iaptus.yaml"

[connection.provider_org]
code = "IESO01"

[connection.trust]
adapter = "iaptus"
base_url = "{base_url}/api/v1"
token_file = "secrets/trust-token"
timeout_seconds = {timeout}
read_attempts = 4

[connection.provider]
adapter = "folder"
path = "provider-slow"

[connection.schedule]
pull_seconds = 0.5
deliver_seconds = 0.5
collect_seconds = 0.5
push_seconds = 0.5
flow_deadline_seconds = {flow_deadline}

[observability]
port = {port}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _two_trusts(
    tmp_path: Path, mode: Mode, *, timeout: float, flow_deadline: float
) -> Iterator[tuple[Bridge, HostilePeer, int]]:
    port = _free_port()
    with HostilePeer(mode, byte_seconds=1.0) as peer:
        extra = SLOW_CONNECTION.format(
            base_url=peer.base_url, timeout=timeout, flow_deadline=flow_deadline, port=port
        )
        with running_bridge(tmp_path, seed=4, referrals=REFERRALS) as bridge:
            with bridge.config_path.open("a", encoding="utf-8") as config:
                config.write(extra)  # the processes read both connections from the file
            yield bridge, peer, port


def _ehr_bridge(bridge: Bridge, *args: str) -> subprocess.Popen[bytes]:
    log = (bridge.config_path.parent / "process-stderr.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "ehr_bridge", "--config", str(bridge.config_path), *args],
        stdout=subprocess.PIPE,
        stderr=log,
    )


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _delivered(bridge: Bridge) -> int:
    return len(list(bridge.platform.referrals_dir.glob("*.json")))


def _stop(process: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGTERM, then the exit code and how long the exit took."""
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("no exit within 30 s of SIGTERM") from None
    return code, time.monotonic() - sent


def _log(bridge: Bridge) -> str:
    return (bridge.config_path.parent / "logs" / "ehr-bridge.log").read_text("utf-8")


@pytest.mark.parametrize("mode", ["drip", "hang"])
def test_the_daemon_honours_sigterm_within_seconds_whatever_the_trust_does(
    tmp_path: Path, mode: Mode
) -> None:
    # deadlines far away: only the stop signal can end the slow trust's call
    with _two_trusts(tmp_path, mode, timeout=300, flow_deadline=600) as (bridge, peer, _):
        daemon = _ehr_bridge(bridge, "run")
        try:
            # the other connection is not held up: its referrals arrive while slow-trust hangs
            _wait_for(lambda: _delivered(bridge) == REFERRALS and peer.requests >= 1)
            time.sleep(1.0)  # the slow call is well under way
            code, seconds = _stop(daemon)
        finally:
            if daemon.poll() is None:
                daemon.kill()
        assert code == 0
        assert seconds < SIGTERM_SECONDS, f"exit took {seconds:.1f} s"
        assert "stopping on signal SIGTERM" in _log(bridge)


def test_sync_once_ends_a_dripping_trust_at_its_deadlines_and_the_other_is_not_delayed(
    tmp_path: Path,
) -> None:
    with _two_trusts(tmp_path, "drip", timeout=1, flow_deadline=2.5) as (bridge, peer, _):
        started = time.monotonic()
        sync = _ehr_bridge(bridge, "sync", "--once", "--json")
        out, _ = sync.communicate(timeout=60)
        seconds = time.monotonic() - started
        assert sync.returncode == 1  # the slow trust's pull failed, and says so
        reports = json.loads(out)
        slow_pull = reports["slow-trust"][0]["pull"]
        assert "flow_deadline_seconds" in slow_pull["error"]
        assert reports["demo-trust"][0]["deliver"]["delivered"] == REFERRALS
        assert seconds < 20, f"sync --once took {seconds:.1f} s"
        assert peer.requests >= 2  # the 1 s call deadline ended one read; the retry began
        runs = _last_runs(bridge)
        # demo-trust's whole cycle was done before the slow trust's pull gave up
        assert runs["demo-trust"]["push"].finished_at < runs["slow-trust"]["pull"].finished_at


def _last_runs(bridge: Bridge) -> dict[str, dict[str, Any]]:
    store = open_store(load_config(bridge.config_path))
    try:
        return {name: store.last_runs(name) for name in ("demo-trust", "slow-trust")}
    finally:
        store.close()


def test_sync_once_honours_sigterm_within_seconds(tmp_path: Path) -> None:
    with _two_trusts(tmp_path, "hang", timeout=300, flow_deadline=600) as (bridge, peer, _):
        sync = _ehr_bridge(bridge, "sync", "--once", "--json")
        try:
            _wait_for(lambda: peer.requests >= 1)
            code, seconds = _stop(sync)
        finally:
            if sync.poll() is None:
                sync.kill()
        assert seconds < SIGTERM_SECONDS, f"exit took {seconds:.1f} s"
        assert code == 1
        assert sync.stdout is not None
        reports = json.loads(sync.stdout.read())
        assert "stopping" in reports["slow-trust"][0]["pull"]["error"]


# --- a database that cannot be opened yet ----------------------------------------------


def _use_database(bridge: Bridge, url: str) -> None:
    text = bridge.config_path.read_text("utf-8")
    text = text.replace('url = "sqlite:///state/ehr-bridge.db"', f'url = "{url}"')
    bridge.config_path.write_text(text, "utf-8")


def _health(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except requests.ConnectionError:
        return None
    return answer.status_code, answer.json()


def _waiting_for(port: int, reason: str) -> bool:
    health = _health(port)
    if health is None:
        return False
    status, body = health
    verdict = body["connections"].get("demo-trust", {})
    return (
        status == 503
        and body["database"] == "unavailable"
        and verdict.get("status") == "waiting"
        and reason in verdict["problems"][0]
    )


def test_a_daemon_whose_database_cannot_be_opened_waits_then_starts(tmp_path: Path) -> None:
    with _two_trusts(tmp_path, "hang", timeout=300, flow_deadline=600) as (bridge, _, port):
        blocker = tmp_path / "not-yet"
        blocker.write_text("a file where the database's folder should be")
        _use_database(bridge, f"sqlite:///{blocker / 'state.db'}")
        daemon = _ehr_bridge(bridge, "run")
        try:
            _wait_for(lambda: _waiting_for(port, "cannot_open"))
            assert daemon.poll() is None  # still running: waiting, not exited
            assert "state database unavailable (cannot_open" in _log(bridge)
            blocker.unlink()  # the folder can be created now
            _wait_for(lambda: _delivered(bridge) == REFERRALS)
            _wait_for(lambda: (_health(port) or (0, {}))[1].get("database") == "ok")
            code, seconds = _stop(daemon)
        finally:
            if daemon.poll() is None:
                daemon.kill()
        assert code == 0 and seconds < SIGTERM_SECONDS
        assert "state database available: start-up goes on" in _log(bridge)


def test_a_daemon_whose_postgresql_is_unreachable_waits_and_still_stops(tmp_path: Path) -> None:
    closed = _free_port()  # nothing listens there
    with _two_trusts(tmp_path, "hang", timeout=300, flow_deadline=600) as (bridge, _, port):
        _use_database(bridge, f"postgresql://ehr@127.0.0.1:{closed}/ehr")
        daemon = _ehr_bridge(bridge, "run")
        try:
            _wait_for(lambda: _waiting_for(port, "unreachable"))
            time.sleep(1.5)  # a retry or two
            assert daemon.poll() is None
            code, seconds = _stop(daemon)
        finally:
            if daemon.poll() is None:
                daemon.kill()
        assert code == 0 and seconds < SIGTERM_SECONDS
        log = _log(bridge)
        assert log.count("state database unavailable (unreachable, OperationalError)") >= 2
        assert "ehr@" not in log and str(closed) not in log  # the URL is never repeated


def test_sigterm_while_waiting_for_the_database_needs_no_database(tmp_path: Path) -> None:
    """Also the daemon's exit is clean when it never had a store (no traceback)."""
    with _two_trusts(tmp_path, "hang", timeout=300, flow_deadline=600) as (bridge, _, port):
        blocker = tmp_path / "never"
        blocker.write_text("x")
        _use_database(bridge, f"sqlite:///{blocker / 'state.db'}")
        daemon = _ehr_bridge(bridge, "run")
        try:
            _wait_for(lambda: _waiting_for(port, "cannot_open"))
            code, seconds = _stop(daemon)
        finally:
            if daemon.poll() is None:
                daemon.kill()
        assert code == 0 and seconds < SIGTERM_SECONDS
        stderr = (bridge.config_path.parent / "process-stderr.log").read_text("utf-8")
        assert "Traceback" not in stderr
        assert not os.path.exists(blocker / "state.db")
