"""Running ehr-bridge in production: health, Prometheus metrics and alerts for the daemon.

The flows publish plain events (``ehr_bridge.sync.events``); this package listens. The
daemon serves ``/healthz`` and ``/metrics`` on a loopback port and sends one alert per
incident (a connection failing for too long, dead letters appearing) and one on recovery,
and pages for every risk not acknowledged in time, repeating until it is.
See docs/operations.md for the metric names and what "healthy" means.

Each name is imported on first use (the metrics bring in prometheus_client, the notifiers
requests), so a command that needs one of them does not pay for the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ehr_bridge.observability.alerts import (
        Alert,
        AlertLoop,
        AlertManager,
        Notifier,
        RiskPolicy,
    )
    from ehr_bridge.observability.health import HealthChecker, HealthReport, RunCache
    from ehr_bridge.observability.metrics import FlowMetrics, StoreCollector, build_metrics
    from ehr_bridge.observability.notifiers import (
        EmailNotifier,
        WebhookNotifier,
        build_notifiers,
    )
    from ehr_bridge.observability.server import ObservabilityServer
    from ehr_bridge.observability.wiring import Observability, build_observability

#: where each exported name lives
_HOMES = {
    "alerts": ("Alert", "AlertLoop", "AlertManager", "Notifier", "RiskPolicy"),
    "health": ("HealthChecker", "HealthReport", "RunCache"),
    "metrics": ("FlowMetrics", "StoreCollector", "build_metrics"),
    "notifiers": ("EmailNotifier", "WebhookNotifier", "build_notifiers"),
    "server": ("ObservabilityServer",),
    "wiring": ("Observability", "build_observability"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

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


def __getattr__(name: str) -> Any:
    """An exported name, imported from its module the first time it is asked for."""
    if name in _HOME_OF:
        return getattr(importlib.import_module(f"{__name__}.{_HOME_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
