"""Builds the daemon's observability from the config, as one service to start and stop.

``build_observability`` validates everything first (notifier secrets included), so a
mistake stops ``ehr-bridge run`` before the first job; ``start`` subscribes the metrics
and alert observers to the flow events, binds the HTTP server and starts the alert loop;
``stop`` undoes all of it and sends any recovery seen at shutdown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from ehr_bridge.config import ObservabilityConfig, ScheduleConfig
from ehr_bridge.observability.alerts import AlertLoop, AlertManager, Notifier, RiskPolicy
from ehr_bridge.observability.health import HealthChecker, RunCache
from ehr_bridge.observability.metrics import FlowMetrics, build_metrics
from ehr_bridge.observability.notifiers import build_notifiers
from ehr_bridge.observability.server import ObservabilityServer
from ehr_bridge.store import Store
from ehr_bridge.sync import events


@dataclass
class Observability:
    """Metrics, health, alerts and the server of one daemon."""

    registry: CollectorRegistry
    flow_metrics: FlowMetrics
    health: HealthChecker
    alerts: AlertManager
    alert_loop: AlertLoop
    server: ObservabilityServer | None

    def start(self) -> None:
        """Subscribe to flow events, then serve and watch."""
        events.subscribe(self.flow_metrics)
        events.subscribe(self.alerts)
        if self.server is not None:
            self.server.start()
        self.alert_loop.start()

    def stop(self) -> None:
        """Stop serving and watching; unsubscribe."""
        self.alert_loop.stop()
        if self.server is not None:
            self.server.stop()
        events.unsubscribe(self.alerts)
        events.unsubscribe(self.flow_metrics)


def build_observability(
    config: ObservabilityConfig,
    schedules: Mapping[str, ScheduleConfig],
    store: Store,
    *,
    notifiers: Sequence[Notifier] | None = None,
    cache_seconds: float = 2.0,
    risk_policy: Mapping[str, RiskPolicy] | None = None,
) -> Observability:
    """Everything the daemon serves and sends, for the connections in ``schedules``.

    ``notifiers`` replaces the ones the config names (tests); ``cache_seconds`` is how long
    the latest runs read for ``/healthz`` and ``/metrics`` are reused between requests.
    ``risk_policy`` gives each connection's risk escalation (default: an hour to
    acknowledge, a page every 30 minutes after).
    """
    names = list(schedules)
    runs = RunCache(store, ttl=cache_seconds)
    health = HealthChecker(store, schedules, runs)
    registry, flow_metrics = build_metrics(store, names, health, runs)
    chosen = build_notifiers(config) if notifiers is None else list(notifiers)
    policy = {name: RiskPolicy() for name in names}
    policy.update(risk_policy or {})
    alerts = AlertManager(
        names,
        chosen,
        failure_seconds=config.failure_alert_minutes * 60,
        dead_letters=store,
        risks=store,
        risk_policy=policy,
    )
    server = ObservabilityServer(config.host, config.port, registry, health)
    return Observability(
        registry=registry,
        flow_metrics=flow_metrics,
        health=health,
        alerts=alerts,
        alert_loop=AlertLoop(alerts, interval=_alert_interval(policy.values())),
        server=server if config.enabled else None,
    )


def _alert_interval(policies: Iterable[RiskPolicy], most: float = 15.0) -> float:
    """How often the alert thread looks: every 15 s, or a third of the shortest risk window.

    A risk page must not wait much past its window; a window of minutes is unaffected.
    """
    windows = [60 * min(p.acknowledge_minutes, p.repeat_minutes) for p in policies]
    return max(0.5, min([most, *(w / 3 for w in windows)]))
