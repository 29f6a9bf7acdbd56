"""Switchable faults, so retry, backoff and read-before-write paths can be driven end to end.

Faults are off unless a test adds one. Each rule matches a method and a path template and
fires for its next ``times`` matching requests:

- ``status``: answer ``status`` (503 by default, or 429) with ``Retry-After`` *before*
  touching the state; a plain retry is safe.
- ``drop``: commit the request, then close the connection without an answer; the client
  cannot know whether the write landed (the ambiguous case).
- ``delay``: commit, then wait ``seconds`` before answering, to trip client timeouts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["status", "drop", "delay"]


@dataclass
class Fault:
    """One fault rule; ``None`` in ``method``/``path`` matches anything."""

    kind: FaultKind = "status"
    method: str | None = None
    #: a route template such as ``/api/v1/referrals/{id}/care-contacts``
    path: str | None = None
    times: int = 1
    status: int = 503
    retry_after: float | None = None
    seconds: float = 0.0

    def matches(self, method: str, template: str) -> bool:
        """True when this rule applies to a request to ``template`` with ``method``."""
        return self.method in (None, method) and self.path in (None, template)


class FaultPlan:
    """The active fault rules, consumed first-added first, shared by request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        #: how many faults have fired, for assertions
        self.fired = 0

    def add(self, fault: Fault) -> Fault:
        """Arm a rule; returns it so a test can inspect its remaining ``times``."""
        with self._lock:
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        """Disarm every rule."""
        with self._lock:
            self._rules.clear()

    def take(self, method: str, template: str) -> Fault | None:
        """The rule that fires for this request, if any, using up one of its ``times``."""
        with self._lock:
            for rule in self._rules:
                if rule.times > 0 and rule.matches(method, template):
                    rule.times -= 1
                    self.fired += 1
                    return rule
            return None
