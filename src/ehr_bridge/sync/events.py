"""Events the flows publish, for observers (metrics, alerts) the daemon subscribes.

The flows know nothing of Prometheus or webhooks: they publish plain events here, and
``ehr_bridge.observability`` (or a test) subscribes. Events carry connection names, flow
names, kinds, counts and durations only: never record contents.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowFinished:
    """One run of one flow ended (``error`` is a PHI-free message, None when it worked)."""

    connection: str
    flow: str
    seconds: float
    counts: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class WriteFinished:
    """One write-back attempt to the trust ended."""

    connection: str
    kind: str
    outcome: str  # written | already_present | retry | dead
    seconds: float


class Observer(Protocol):
    """Anything that wants to hear about flows and writes."""

    def on_event(self, event: FlowFinished | WriteFinished) -> None:
        """Handle one event; must be quick and must not raise."""
        ...


_observers: list[Observer] = []
_lock = threading.Lock()


def subscribe(observer: Observer) -> None:
    """Start sending events to ``observer``."""
    with _lock:
        _observers.append(observer)


def unsubscribe(observer: Observer) -> None:
    """Stop sending events to ``observer``."""
    with _lock:
        if observer in _observers:
            _observers.remove(observer)


def publish(event: FlowFinished | WriteFinished) -> None:
    """Send an event to every observer; a failing observer never stops a flow."""
    with _lock:
        observers = list(_observers)
    for observer in observers:
        try:
            observer.on_event(event)
        except Exception as exc:  # an observer's bug must not break the sync
            log.warning("observer failed", extra={"error": type(exc).__name__})
