"""Prometheus metrics: counters from flow events, gauges read from the store at scrape time.

Labels are limited to ``connection``, ``flow``, ``kind``, ``state`` and ``outcome``, all
drawn from fixed vocabularies (config names, flow names, write kinds, count names), so no
patient data can reach a label and cardinality stays bounded. Every metric lives in the
daemon's own registry, never the library's global one, so tests can build as many as they
like.

Names (all prefixed ``ehr_bridge_``) are listed in docs/operations.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.exc import SQLAlchemyError

from ehr_bridge.observability.health import HealthChecker, RunCache
from ehr_bridge.store import Store
from ehr_bridge.sync.events import FlowFinished, WriteFinished

log = logging.getLogger(__name__)

#: write-back latency buckets: a trust API answers in tens of milliseconds to seconds
WRITE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: a flow run takes from milliseconds (nothing to do) to many minutes (a big first pull)
FLOW_BUCKETS = (0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


class FlowMetrics:
    """The event-driven half: an ``Observer`` of ``sync.events``."""

    def __init__(self, registry: CollectorRegistry, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self._last_success: dict[tuple[str, str], float] = {}
        self.runs = Counter(
            "ehr_bridge_flow_runs",
            "Flow runs by outcome (ok or failed).",
            ["connection", "flow", "outcome"],
            registry=registry,
        )
        self.flow_seconds = Histogram(
            "ehr_bridge_flow_duration_seconds",
            "How long each flow run took.",
            ["connection", "flow"],
            buckets=FLOW_BUCKETS,
            registry=registry,
        )
        self.records = Counter(
            "ehr_bridge_records",
            "Records handled, by flow and outcome (stored, quarantined, delivered, written...).",
            ["connection", "flow", "outcome"],
            registry=registry,
        )
        self.last_records = Gauge(
            "ehr_bridge_last_run_records",
            "Records handled by the latest run of each flow (records in and out per cycle).",
            ["connection", "flow", "outcome"],
            registry=registry,
        )
        self.last_success = Gauge(
            "ehr_bridge_last_success_timestamp_seconds",
            "Unix time of the latest successful run of each flow by this daemon.",
            ["connection", "flow"],
            registry=registry,
        )
        self.write_seconds = Histogram(
            "ehr_bridge_write_duration_seconds",
            "Latency of each write-back attempt to the trust, by kind and outcome.",
            ["connection", "kind", "outcome"],
            buckets=WRITE_BUCKETS,
            registry=registry,
        )

    def on_event(self, event: FlowFinished | WriteFinished) -> None:
        """Count one finished flow run or write attempt."""
        if isinstance(event, WriteFinished):
            labels = (event.connection, event.kind, event.outcome)
            self.write_seconds.labels(*labels).observe(event.seconds)
            return
        self._flow(event)

    def _flow(self, event: FlowFinished) -> None:
        outcome = "ok" if event.error is None else "failed"
        self.runs.labels(event.connection, event.flow, outcome).inc()
        self.flow_seconds.labels(event.connection, event.flow).observe(event.seconds)
        if event.error is not None:
            return
        for name, value in event.counts.items():
            if isinstance(value, int) and not isinstance(value, bool):
                self.records.labels(event.connection, event.flow, name).inc(value)
                self.last_records.labels(event.connection, event.flow, name).set(value)
        now = self._wall()
        self.last_success.labels(event.connection, event.flow).set(now)
        with self._lock:
            self._last_success[(event.connection, event.flow)] = now - event.seconds

    def last_success_started(self, connection: str, flow: str) -> float | None:
        """Unix time at which this daemon's latest successful run of ``flow`` started."""
        with self._lock:
            return self._last_success.get((connection, flow))


class StoreCollector:
    """The scrape-time half: outbox depth, dead letters, quarantine, lag, cursor, health."""

    def __init__(
        self,
        store: Store,
        connections: Sequence[str],
        flows: FlowMetrics,
        health: HealthChecker,
        runs: RunCache,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._connections = list(connections)
        self._flows = flows
        self._health = health
        self._runs = runs
        self._wall = wall

    def collect(self) -> Iterable[Metric]:
        """Read the store once per connection; a dead database only zeroes ``database_up``."""
        up = GaugeMetricFamily(
            "ehr_bridge_database_up", "1 when the state database answers a query."
        )
        try:
            families = self._families()
        except SQLAlchemyError as exc:
            log.warning("metrics: database unavailable", extra={"error": type(exc).__name__})
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families.values()]

    def _families(self) -> Mapping[str, GaugeMetricFamily]:
        families = _empty_families()
        report = self._health.check()
        for name in self._connections:
            self._one(name, families)
            healthy = report.connections.get(name, {}).get("status") == "ok"
            families["healthy"].add_metric([name], 1 if healthy else 0)
        return families

    def _one(self, name: str, families: Mapping[str, GaugeMetricFamily]) -> None:
        outbox = self._store.outbox_counts(name)
        for state in ("pending", "in_flight", "done", "dead", "cancelled"):
            families["outbox"].add_metric([name, state], outbox.get(state, 0))
        families["dead"].add_metric([name], outbox.get("dead", 0))
        families["quarantine"].add_metric([name], self._store.quarantine_count(name))
        cursor = _instant(self._store.get_cursor(name))
        if cursor is not None:
            families["cursor"].add_metric([name], cursor)
        lag = self._lag(name)
        if lag is not None:
            families["lag"].add_metric([name], lag)
        self._risks(name, families)

    def _risks(self, name: str, families: Mapping[str, GaugeMetricFamily]) -> None:
        """Open risks by age (``le`` buckets in minutes, cumulative) and the oldest's age."""
        now = self._wall()
        ages = [
            now - view.created_at.timestamp() for view in self._store.risks(name, open_only=True)
        ]
        for bound in RISK_AGE_BUCKETS_MINUTES:
            within = sum(1 for age in ages if age <= bound * 60)
            families["risk_open"].add_metric([name, str(bound)], within)
        families["risk_open"].add_metric([name, "+Inf"], len(ages))
        families["risk_oldest"].add_metric([name], max(ages, default=0.0))

    def _lag(self, name: str) -> float | None:
        """Seconds since the start of the latest successful pull (by any daemon)."""
        candidates = [self._flows.last_success_started(name, "pull")]
        run = self._runs.latest(name).get("pull")
        if run is not None and run.ok:
            candidates.append(run.started_at.timestamp())
        known = [c for c in candidates if c is not None]
        return max(self._wall() - max(known), 0.0) if known else None


#: age buckets of open risks (minutes): within the lane's minute, the hour, the day
RISK_AGE_BUCKETS_MINUTES = (1, 15, 60, 240, 1440)


def _empty_families() -> dict[str, GaugeMetricFamily]:
    return {
        "risk_open": GaugeMetricFamily(
            "ehr_bridge_risk_open",
            "Open risks (not acknowledged at the trust, not resolved) no older than le minutes.",
            labels=["connection", "le"],
        ),
        "risk_oldest": GaugeMetricFamily(
            "ehr_bridge_risk_oldest_open_seconds",
            "Age of the oldest open risk (0 when none is open).",
            labels=["connection"],
        ),
        "outbox": GaugeMetricFamily(
            "ehr_bridge_outbox_rows", "Write-backs by state.", labels=["connection", "state"]
        ),
        "dead": GaugeMetricFamily(
            "ehr_bridge_dead_letters",
            "Write-backs that gave up and wait for an operator.",
            labels=["connection"],
        ),
        "quarantine": GaugeMetricFamily(
            "ehr_bridge_quarantine_open", "Open quarantine entries.", labels=["connection"]
        ),
        "cursor": GaugeMetricFamily(
            "ehr_bridge_pull_cursor_timestamp_seconds",
            "The pull cursor: the trust's last-change time we have read up to.",
            labels=["connection"],
        ),
        "lag": GaugeMetricFamily(
            "ehr_bridge_lag_seconds",
            "Seconds since the latest successful pull started: trust changes newer than this"
            " may not be pulled yet.",
            labels=["connection"],
        ),
        "healthy": GaugeMetricFamily(
            "ehr_bridge_connection_healthy",
            "1 when the connection's last cycle is fine (see /healthz).",
            labels=["connection"],
        ),
    }


def _instant(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def build_metrics(
    store: Store, connections: Sequence[str], health: HealthChecker, runs: RunCache
) -> tuple[CollectorRegistry, FlowMetrics]:
    """A fresh registry holding the flow metrics and the store collector."""
    registry = CollectorRegistry()
    flows = FlowMetrics(registry)
    registry.register(StoreCollector(store, connections, flows, health, runs))
    return registry, flows
