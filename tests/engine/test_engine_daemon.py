"""The daemon as a real process: stopped and killed mid-run, restarted, nothing lost or doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from support.bridge import Bridge, running_bridge

FAST_SCHEDULE = """
[connection.schedule]
pull_seconds = 0.3
deliver_seconds = 0.3
collect_seconds = 0.3
push_seconds = 0.3

[observability]
port = 0  # several daemons on one host: each takes a free port
"""

pytestmark = pytest.mark.slow


def _start(bridge: Bridge) -> subprocess.Popen[bytes]:
    log = (bridge.config_path.parent / "daemon-stderr.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "ehr_bridge", "--config", str(bridge.config_path), "run"],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def _written(bridge: Bridge) -> Counter[str]:
    counts: Counter[str] = Counter()
    for entry in bridge.simulator.export()["referrals"]:
        for key in ("care_contacts", "clinical_notes", "assessments", "status_events"):
            counts[key] += len(entry[key])
            counts["refs"] += len({i["client_reference"] for i in entry[key]})
    return counts


def _wait_for(bridge: Bridge, condition, timeout: float = 90.0) -> None:  # type: ignore[no-untyped-def]
    """Wait for ``condition`` while the provider platform works alongside, as a real one would."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bridge.platform.step()
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_daemon_stops_cleanly_and_restarts_without_loss_or_duplicates(tmp_path: Path) -> None:
    with running_bridge(tmp_path, seed=7, referrals=10, extra_config=FAST_SCHEDULE) as bridge:
        daemon = _start(bridge)
        try:
            _wait_for(bridge, lambda: _written(bridge)["care_contacts"] > 0)
            daemon.send_signal(signal.SIGTERM)  # mid-run: work in hand finishes, then exit
            assert daemon.wait(timeout=30) == 0
            daemon = _start(bridge)
            _wait_for(bridge, lambda: _written(bridge)["clinical_notes"] > 5)
            os.kill(daemon.pid, signal.SIGKILL)  # and a hard crash too
            daemon.wait(timeout=10)
            daemon = _start(bridge)

            def complete() -> bool:
                expected = Counter(a.kind for a in bridge.platform.expected_artefacts())
                written = _written(bridge)
                return (
                    len(list(bridge.platform.referrals_dir.glob("*.json"))) == 10
                    and written["care_contacts"]
                    + written["clinical_notes"]
                    + written["assessments"]
                    >= expected["encounter"] + expected["note"] + expected["score"]
                    and written["status_events"] >= 20
                )

            _wait_for(bridge, complete)
            time.sleep(1.0)  # a few more cycles: nothing further may be written
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
        written = _written(bridge)
        expected = Counter(a.kind for a in bridge.platform.expected_artefacts())
        assert written["care_contacts"] == expected["encounter"]
        assert written["clinical_notes"] == expected["note"]
        assert written["assessments"] == expected["score"]
        assert written["status_events"] == 20  # accepted + discharged for each referral
        # every item's client reference is unique: nothing was written twice
        assert written["refs"] == sum(
            written[k] for k in ("care_contacts", "clinical_notes", "assessments", "status_events")
        )
