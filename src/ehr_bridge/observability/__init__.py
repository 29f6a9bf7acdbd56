"""Running ehr-bridge in production: health, Prometheus metrics and alerts for the daemon.

The flows publish plain events (``ehr_bridge.sync.events``); this package listens. The
daemon serves ``/healthz`` and ``/metrics`` on a loopback port and sends one alert per
incident (a connection failing for too long, dead letters appearing) and one on recovery,
and pages for every risk not acknowledged in time, repeating until it is.
See docs/operations.md for the metric names and what "healthy" means.
"""

from ehr_bridge.observability.alerts import (
    Alert,
    AlertLoop,
    AlertManager,
    Notifier,
    RiskPolicy,
)
from ehr_bridge.observability.health import HealthChecker, HealthReport, RunCache
from ehr_bridge.observability.metrics import FlowMetrics, StoreCollector, build_metrics
from ehr_bridge.observability.notifiers import EmailNotifier, WebhookNotifier, build_notifiers
from ehr_bridge.observability.server import ObservabilityServer
from ehr_bridge.observability.wiring import Observability, build_observability

__all__ = [
    "Alert",
    "AlertLoop",
    "AlertManager",
    "EmailNotifier",
    "FlowMetrics",
    "HealthChecker",
    "HealthReport",
    "Notifier",
    "Observability",
    "ObservabilityServer",
    "RiskPolicy",
    "RunCache",
    "StoreCollector",
    "WebhookNotifier",
    "build_metrics",
    "build_notifiers",
    "build_observability",
]
