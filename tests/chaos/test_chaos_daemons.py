"""Daemons as real processes under simulator faults, SIGKILLed at random moments.

Every kind of write-back is counted at the trust, risk alerts (PHQ-9 item 9) included.

CI runs these with a fixed seed. Run them longer, with random seeds::

    EHR_BRIDGE_CHAOS_KILLS=100 EHR_BRIDGE_CHAOS_SEED=random make unit
    .venv/bin/python benchmarks/chaos.py --kills 200 --backend postgresql
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from ehr_bridge.sim.chaos import ChaosReport, ChaosSettings, run_chaos
from support.databases import BACKENDS, database_url

pytestmark = pytest.mark.slow


def _seed() -> int:
    value = os.environ.get("EHR_BRIDGE_CHAOS_SEED", "7")
    return random.SystemRandom().randrange(1, 10**6) if value == "random" else int(value)


def _kills(default: int) -> int:
    return int(os.environ.get("EHR_BRIDGE_CHAOS_KILLS", default))


def _assert_exactly_once(report: ChaosReport, kills: int) -> None:
    summary = "\n".join(report.lines())
    assert report.settled, summary
    assert report.kills == kills
    assert report.delivered == report.referrals, summary
    assert report.lost == 0 and report.duplicated == 0, summary
    assert report.written == report.expected, summary
    assert report.conflicts == 0, summary  # no retry ever re-sent a write the trust had
    assert report.expected["risk"] > 0, summary  # risk items were in the run, exactly once too
    for kind in ("status_503", "status_429", "reset", "drop"):
        assert report.faults[kind] > 0, f"fault {kind} never fired: the run proved less\n{summary}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_daemon_killed_twenty_times_loses_and_doubles_nothing(
    backend: str, tmp_path: Path
) -> None:
    kills = _kills(20)
    settings = ChaosSettings(
        workdir=tmp_path / "run",
        database_url=None if backend == "sqlite" else database_url(backend, tmp_path),
        seed=_seed(),
        kills=kills,
        kill_every=(0.3, 1.3),
    )
    _assert_exactly_once(run_chaos(settings), kills)


@pytest.mark.parametrize("backend", BACKENDS)
def test_three_daemons_share_the_work_without_double_writes(backend: str, tmp_path: Path) -> None:
    kills = _kills(10)
    settings = ChaosSettings(
        workdir=tmp_path / "run",
        database_url=None if backend == "sqlite" else database_url(backend, tmp_path),
        seed=_seed() + 1,
        referrals=16,
        daemons=3,
        kills=kills,
        kill_every=(0.3, 1.0),
    )
    _assert_exactly_once(run_chaos(settings), kills)
