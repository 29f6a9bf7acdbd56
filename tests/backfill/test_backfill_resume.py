"""Backfill: interrupted (cleanly or by SIGKILL) and run again, it ends where one run would,
and stores nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from ehr_bridge.sim.faults import FaultRates
from ehr_bridge.store import Store
from ehr_bridge.sync.backfill import BackfillProgress, backfill, backfill_cursor_name
from support.bridge import Bridge, running_bridge

pytestmark = pytest.mark.slow

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
REFERRALS = 90  # 20 per page in the test config: five pages


def _state(store: Store) -> list[tuple[Any, ...]]:
    """Everything that must match between one run and an interrupted one."""
    referrals = sorted(
        (r.id, r.trust_referral_id, r.patient_id, r.source_hash, r.fhir_hash, r.status)
        for r in store.list_referrals("demo-trust")
    )
    quarantine = sorted((q.record_ref, q.code, q.field) for q in store.quarantine_rows())
    return [*referrals, *quarantine]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, ...]]:
    """The end state of one uninterrupted backfill."""
    with running_bridge(
        tmp_path_factory.mktemp("one-run"), seed=4, referrals=REFERRALS, hostile=3
    ) as bridge:
        result = backfill(bridge.conn, bridge.store, SINCE)
        assert result.complete and result.resumed_from is None
        assert result.counts.stored == REFERRALS and result.counts.quarantined == 3
        return _state(bridge.store)


def test_stopped_then_resumed_ends_like_one_run(
    tmp_path: Path, reference: list[tuple[Any, ...]]
) -> None:
    with running_bridge(tmp_path, seed=4, referrals=REFERRALS, hostile=3) as bridge:
        stop = threading.Event()
        seen: list[BackfillProgress] = []

        def on_progress(progress: BackfillProgress) -> None:
            seen.append(progress)
            if progress.counts.pages == 2:
                stop.set()  # as Ctrl-C does: the page in hand is committed, then it returns

        first = backfill(bridge.conn, bridge.store, SINCE, stop=stop, on_progress=on_progress)
        assert not first.complete and first.counts.pages == 2
        assert bridge.store.get_cursor(backfill_cursor_name("demo-trust")) == first.cursor
        assert bridge.store.get_cursor("demo-trust") is None  # the daemon's cursor is untouched
        second = backfill(bridge.conn, bridge.store, SINCE)
        assert second.complete and second.resumed_from == first.cursor
        # nothing twice: what the first run stored, the second found unchanged
        assert first.counts.stored + second.counts.stored == REFERRALS
        assert first.counts.quarantined + second.counts.quarantined == 3
        assert _state(bridge.store) == reference
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and 0 < fractions[0] < 1
    assert all(p.rate > 0 for p in seen)


def _backfill_cli(bridge: Bridge, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ehr_bridge",
            "--config",
            str(bridge.config_path),
            "backfill",
            "--connection",
            "demo-trust",
            "--since",
            "2026-01-01",
            "--no-progress",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_killed_outright_then_run_again_ends_like_one_run(
    tmp_path: Path, reference: list[tuple[Any, ...]]
) -> None:
    with running_bridge(tmp_path, seed=4, referrals=REFERRALS, hostile=3) as bridge:
        bridge.simulator.faults.set_rates(FaultRates(latency_ms=300))  # slow pages
        process = _backfill_cli(bridge)
        key = backfill_cursor_name("demo-trust")
        deadline = time.monotonic() + 30
        while bridge.store.get_cursor(key) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)  # mid-page, mid-transaction perhaps
        process.wait(timeout=10)
        partial = len(bridge.store.list_referrals("demo-trust"))
        assert 0 < partial < REFERRALS
        bridge.simulator.faults.set_rates(FaultRates())
        again = _backfill_cli(bridge, "--json")
        out, err = again.communicate(timeout=60)
        assert again.returncode == 0, err.decode()[-2000:]
        assert b'"resumed_from": "20' in out
        assert _state(bridge.store) == reference


def test_an_insert_race_with_the_daemon_is_retried(
    tmp_path: Path, reference: list[tuple[Any, ...]]
) -> None:
    with running_bridge(tmp_path, seed=4, referrals=REFERRALS, hostile=3) as bridge:
        real = bridge.store.save_pull_page
        calls = {"n": 0}

        def racing(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 3:  # the daemon's pull inserted one of these first
                raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
            return real(*args, **kwargs)

        bridge.store.save_pull_page = racing  # type: ignore[method-assign]
        result = backfill(bridge.conn, bridge.store, SINCE)
        assert result.complete
        assert result.counts.stored == REFERRALS
        assert _state(bridge.store) == reference


def test_restart_starts_again_at_since(tmp_path: Path) -> None:
    with running_bridge(tmp_path, seed=4, referrals=30) as bridge:
        backfill(bridge.conn, bridge.store, SINCE)
        again = backfill(bridge.conn, bridge.store, SINCE)
        assert again.resumed_from is not None and again.counts.seen <= 2
        restarted = backfill(bridge.conn, bridge.store, SINCE, restart=True)
        assert restarted.resumed_from is None
        assert restarted.counts.seen == 30 and restarted.counts.unchanged == 30
