"""``/healthz``: is the database answering, and is each connection's last cycle fine?

A connection is **fine** when every flow (pull, deliver, collect, push) has a recorded run,
the latest run of each one succeeded, and that run finished recently: within three of its
intervals plus a minute, so a flow that hangs (and so records nothing) turns the check red
too. Runs are read from the state database, not from this process's memory, so the answer
is the same whichever daemon ran the flow, and it survives restarts.

The report names connections, flows, ages and error *codes* only; the run's error text
stays in ``ehr-bridge status`` (it is PHI-free, but it can quote a trust record's id).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ehr_bridge.config import ScheduleConfig
from ehr_bridge.store import RunRow, Store

FLOW_NAMES = ("pull", "deliver", "collect", "push", "risk")
#: a flow is stale after this many of its intervals without a finished run (plus the slack)
STALE_INTERVALS = 3
STALE_SLACK_SECONDS = 60.0


@dataclass(frozen=True)
class FlowRun:
    """The latest run of one flow, as health and metrics need it."""

    ok: bool
    started_at: datetime
    finished_at: datetime
    #: a failed run's error code (``unreachable``, ``auth_refused``, ...), if recorded
    code: str | None = None


class RunCache:
    """The latest run of each flow per connection, read at most once per ``ttl`` seconds.

    ``/healthz`` and ``/metrics`` may be scraped every few seconds by several tools; the
    cache keeps that from turning into a query per request.
    """

    def __init__(
        self, store: Store, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[float, dict[str, FlowRun]]] = {}

    def latest(self, connection: str) -> dict[str, FlowRun]:
        """Latest run per flow (raises SQLAlchemyError when the database does not answer)."""
        now = self._clock()
        with self._lock:
            hit = self._cached.get(connection)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        runs = {flow: _flow_run(row) for flow, row in self._store.last_runs(connection).items()}
        with self._lock:
            self._cached[connection] = (now, runs)
        return runs


def _flow_run(row: RunRow) -> FlowRun:
    return FlowRun(
        ok=row.ok,
        started_at=_aware(row.started_at),
        finished_at=_aware(row.finished_at),
        code=None if row.ok else row.error_code,
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class HealthReport:
    """The verdict and its reasons; ``as_json`` is the body of ``/healthz``."""

    ready: bool
    database: bool
    connections: Mapping[str, Mapping[str, Any]]

    def as_json(self) -> dict[str, Any]:
        """The JSON body: ``status`` is ``ready`` or ``not_ready``."""
        return {
            "status": "ready" if self.ready else "not_ready",
            "database": "ok" if self.database else "unavailable",
            "connections": dict(self.connections),
        }


class HealthChecker:
    """Evaluates readiness for the daemon's connections and their schedules."""

    def __init__(
        self,
        store: Store,
        schedules: Mapping[str, ScheduleConfig],
        runs: RunCache | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._schedules = dict(schedules)
        self._runs = runs or RunCache(store)
        self._now = now

    @property
    def connections(self) -> Sequence[str]:
        """The connections this checker judges."""
        return list(self._schedules)

    def check(self) -> HealthReport:
        """Ping the database, then judge each connection from its latest runs."""
        if not database_answers(self._store):
            return HealthReport(ready=False, database=False, connections={})
        try:
            verdicts = {name: self._judge(name, sched) for name, sched in self._schedules.items()}
        except SQLAlchemyError:
            return HealthReport(ready=False, database=False, connections={})
        ready = all(v["status"] == "ok" for v in verdicts.values())
        return HealthReport(ready=ready, database=True, connections=verdicts)

    def _judge(self, connection: str, schedule: ScheduleConfig) -> dict[str, Any]:
        runs = self._runs.latest(connection)
        now = self._now()
        flows: dict[str, Any] = {}
        problems: list[str] = []
        for flow in FLOW_NAMES:
            run = runs.get(flow)
            if run is None:
                flows[flow] = {"state": "not_run"}
                problems.append(f"{flow}: no run yet")
                continue
            age = (now - run.finished_at).total_seconds()
            state = _flow_state(run, age, stale_after(schedule, flow))
            flows[flow] = {"state": state, "age_seconds": round(max(age, 0.0), 1)}
            if state == "failed":
                code = run.code or "error"
                flows[flow]["code"] = code
                problems.append(f"{flow}: failed ({code})")
            elif state != "ok":
                problems.append(f"{flow}: {state}")
        status = "ok" if not problems else "failing"
        return {"status": status, "flows": flows, "problems": problems}


def _flow_state(run: FlowRun, age: float, limit: float) -> str:
    if not run.ok:
        return "failed"
    return "stale" if age > limit else "ok"


def stale_after(schedule: ScheduleConfig, flow: str) -> float:
    """Seconds after which a flow's last run counts as stale (it should have run again)."""
    interval = float(getattr(schedule, f"{flow}_seconds"))
    return STALE_INTERVALS * interval + STALE_SLACK_SECONDS


def database_answers(store: Store) -> bool:
    """True when the state database runs a trivial query."""
    try:
        with store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError):
        return False
    return True
