"""Retention inside the daemon: the purge on a schedule, by one daemon at a time.

With ``[security] retention_days`` set, ``ehr-bridge run`` runs the same purge as
``ehr-bridge retention purge`` (payloads, then kept files) every
``retention_interval_hours``, in a thread of its own, under a flow lease of its own, and
records each purge in the run table (``ehr-bridge retention status``). A whole bridge
run (``security_flow``) is aged past the period by moving its stored times back, then
a daemon with a one-second interval purges it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from security_flow import referral_records, run_flow
from sqlmodel import select
from typer.testing import CliRunner

from ehr_bridge.adapters.base import KeptFile
from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.memory import MemoryTrust
from ehr_bridge.cli.app import app
from ehr_bridge.config import ScheduleConfig, SecurityConfig
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.mapping import load_mapping
from ehr_bridge.store import (
    OutboxRow,
    ReferralRow,
    ResourceRow,
    RunRow,
    Store,
    utcnow,
)
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.retention import RETENTION_FLOW, STORE_WIDE, RetentionJob
from ehr_bridge.sync.scheduler import run_daemon

SECOND = 1 / 3600  # an interval of one second, in hours
POLICY = SecurityConfig(retention_days=30, retention_interval_hours=SECOND)
#: the connection's own flows run once at start, then not again during a test
QUIET = ScheduleConfig(
    pull_seconds=600, deliver_seconds=600, collect_seconds=600, push_seconds=600, risk_seconds=300
)


@dataclasses.dataclass
class Aged:
    """A finished bridge run, every time in it moved past the retention period."""

    conn: Connection
    store: Store
    provider: Path
    url: str


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    flow = run_flow(root, None)
    assert set(flow.store.outbox_counts("sec")) == {"done"}
    _age(flow.store, root / "provider", days=40)
    flow.store.close()
    return root


@pytest.fixture
def flow(finished: Path, tmp_path: Path) -> Iterator[Aged]:
    root = shutil.copytree(finished, tmp_path / "copy")  # file times kept
    url = f"sqlite:///{root / 'state.db'}"
    store = Store(url)
    trust = MemoryTrust(referral_records(21, 4, 2))
    conn = Connection(
        name="sec",
        mapping=load_mapping(bundled_mapping("iaptus.yaml")),
        source=trust,
        writer=trust,
        provider=FolderProvider(root / "provider"),
        provider_ref=ProviderRef(code="IESO01", display="Provider"),
        test_connection=True,
    )
    yield Aged(conn, store, root / "provider", url)
    store.close()


def _age(store: Store, provider: Path, days: float) -> None:
    """Move every stored time (and the kept files' times) ``days`` back."""
    back = timedelta(days=days)
    with store.session() as s:
        for row in s.exec(select(ReferralRow)).all():
            row.first_pulled_at -= back
            row.last_pulled_at -= back
            s.add(row)
        for outbox in s.exec(select(OutboxRow)).all():
            outbox.updated_at -= back
            s.add(outbox)
        for resource in s.exec(select(ResourceRow)).all():
            resource.updated_at -= back
            s.add(resource)
    moment = time.time() - days * 86400
    for kept in (provider / "sessions" / "processed").iterdir():
        os.utime(kept, (moment, moment))


def _payloads(store: Store) -> dict[str, int]:
    """Resources with a body and resources emptied, by whether they were purged."""
    with store.session() as s:
        rows = s.exec(select(ResourceRow)).all()
    return {
        "kept": sum(1 for r in rows if r.purged_at is None),
        "purged": sum(1 for r in rows if r.purged_at is not None),
    }


def _purges(store: Store) -> int:
    """How many purges the run table records."""
    with store.session() as s:
        runs = s.exec(
            select(RunRow).where(RunRow.connection == STORE_WIDE, RunRow.flow == RETENTION_FLOW)
        )
        return len(runs.all())


def _wait(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _daemon(flow: Aged, job: RetentionJob, stop: threading.Event) -> threading.Thread:
    daemon = threading.Thread(
        target=run_daemon,
        args=([(flow.conn, QUIET)], flow.store, stop),
        kwargs={"retention": job},
    )
    daemon.start()
    return daemon


def test_the_daemon_purges_reconciled_payloads_and_kept_files_on_schedule(flow: Aged) -> None:
    processed = flow.provider / "sessions" / "processed"
    bundles = len(list(processed.iterdir()))
    assert bundles > 0
    job = RetentionJob([flow.conn], flow.store, POLICY, owner="daemon-a")
    stop = threading.Event()
    daemon = _daemon(flow, job, stop)
    try:
        _wait(lambda: _purges(flow.store) >= 1)
        first = flow.store.last_runs(STORE_WIDE)[RETENTION_FLOW]
        _wait(lambda: _purges(flow.store) >= 3)  # and again, every interval
    finally:
        stop.set()
        daemon.join(timeout=30)
    assert not daemon.is_alive()
    assert first.ok and json.loads(first.counts)["referrals"] == 4
    assert json.loads(first.counts)["files"] == {"sessions/processed": bundles}
    assert not any(processed.iterdir())  # the plain-text session bundles went too
    payloads = _payloads(flow.store)
    assert payloads["purged"] > 0
    referral = flow.store.list_referrals("sec")[0]
    assert flow.store.resource("Patient", referral.patient_id) is None
    kept = {r["resourceType"] for r in flow.store.resources_for_referral(referral.id)}
    assert "DocumentReference" not in kept and "ServiceRequest" in kept
    later = json.loads(flow.store.last_runs(STORE_WIDE)[RETENTION_FLOW].counts)
    assert later["resources"] == later["patients"] == 0  # nothing left to empty
    # the connection's flows ran beside it, in their own threads
    assert set(flow.store.last_runs("sec")) == {"pull", "deliver", "collect", "push", "risk"}


def test_a_second_daemon_does_not_purge_while_one_holds_the_lease(flow: Aged) -> None:
    assert flow.store.take_flow_lease(STORE_WIDE, RETENTION_FLOW, "daemon-b", 600)
    job = RetentionJob([flow.conn], flow.store, POLICY, owner="daemon-a")
    stop = threading.Event()
    assert job.run(stop) == {"skipped": 1}
    assert _purges(flow.store) == 0 and _payloads(flow.store)["purged"] == 0
    flow.store.release_flow_lease(STORE_WIDE, RETENTION_FLOW, "daemon-b")
    counts = job.run(stop)
    assert counts is not None and counts["referrals"] == 4


class HeldStore:
    """The store, except that a purge's first look at the last purge waits to be let go."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.inside = threading.Event()
        self.release = threading.Event()

    def last_runs(self, connection: str) -> Any:
        if connection == STORE_WIDE and not self.inside.is_set():
            self.inside.set()  # daemon A holds the lease and is about to purge
            assert self.release.wait(10)
        return self._store.last_runs(connection)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_two_daemons_never_purge_at_once(flow: Aged) -> None:
    held = HeldStore(flow.store)
    first = RetentionJob([flow.conn], held, POLICY, owner="daemon-a")  # type: ignore[arg-type]
    second = RetentionJob([flow.conn], flow.store, POLICY, owner="daemon-b")
    stop = threading.Event()
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(first.run(stop)))
    worker.start()
    try:
        assert held.inside.wait(10)
        assert second.run(stop) == {"skipped": 1}  # A is purging: B leaves it
    finally:
        held.release.set()
        worker.join(10)
    assert results[0]["referrals"] == 4
    assert _purges(flow.store) == 1


def test_daemons_purge_once_per_interval_between_them(flow: Aged) -> None:
    daily = SecurityConfig(retention_days=30)  # every 24 h, the default
    assert daily.retention_interval_hours == 24
    stop = threading.Event()
    first = RetentionJob([flow.conn], flow.store, daily, owner="daemon-a")
    assert first.first_run() <= utcnow()  # never purged: due now
    assert first.run(stop) is not None
    second = RetentionJob([flow.conn], flow.store, daily, owner="daemon-b")
    assert second.run(stop) == {"skipped": 1}  # purged a moment ago by the other daemon
    assert _purges(flow.store) == 1
    # a daemon (re)started now waits for the interval from the last purge, not from its start
    due = second.first_run() - utcnow()
    assert timedelta(hours=23) < due <= timedelta(hours=24)


class UnlistableFolder(FolderProvider):
    """A provider folder whose kept files cannot be listed (its permissions changed)."""

    def kept_files(self, before: datetime) -> Iterator[KeptFile]:
        raise PermissionError("sessions/processed")


def test_a_failed_purge_is_recorded_for_status(flow: Aged) -> None:
    broken = dataclasses.replace(flow.conn, provider=UnlistableFolder(flow.provider))
    job = RetentionJob([broken], flow.store, POLICY, owner="daemon-a")
    assert job.run(threading.Event()) is None
    row = flow.store.last_runs(STORE_WIDE)[RETENTION_FLOW]
    assert not row.ok and row.error == "cannot delete a kept file (PermissionError)"
    assert _payloads(flow.store)["purged"] > 0  # the payloads went first, in their batches
    assert flow.store.take_flow_lease(STORE_WIDE, RETENTION_FLOW, "daemon-b", 60)  # let go


def test_retention_status_shows_the_last_purge(flow: Aged, tmp_path: Path) -> None:
    url = flow.url
    config = tmp_path / "ehr-bridge.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[security]\nretention_days = 30\n'
        "retention_interval_hours = 6\nrequire_encryption = false  # a test store\n"
    )
    runner = CliRunner()
    before = runner.invoke(app, ["--config", str(config), "retention", "status", "--json"])
    assert before.exit_code == 0, before.output
    assert json.loads(before.stdout) == {
        "retention_days": 30,
        "interval_hours": 6.0,
        "last_purge": None,
    }
    RetentionJob([flow.conn], flow.store, POLICY).run(threading.Event())
    shown = runner.invoke(app, ["--config", str(config), "retention", "status", "--json"])
    last = json.loads(shown.stdout)["last_purge"]
    assert last["ok"] and last["counts"]["referrals"] == 4 and last["error"] is None
    text = runner.invoke(app, ["--config", str(config), "retention", "status"]).stdout
    assert "retention: 30 days; the daemon purges every 6 h" in text
    assert "ok: 4 referrals" in text


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        SecurityConfig(retention_days=30, retention_interval_hours=0)
