"""Switchable faults, so retry, backoff and read-before-write paths can be driven end to end.

Faults are off unless a test adds one, and fire on API requests only, never on a
simulator's own ``/_sim/`` endpoints (``sim.http_base`` asks ``FaultPlan.take``). Each rule
matches a method and a path template and fires for its next ``times`` matching requests:

- ``status``: answer ``status`` (503 by default, or 429) with ``Retry-After`` *before*
  touching the state; a plain retry is safe.
- ``drop``: commit the request, then close the connection without an answer; the client
  cannot know whether the write landed (the ambiguous case).
- ``delay``: commit, then wait ``seconds`` before answering, to trip client timeouts.
- ``reset``: close the connection before reading the state (the client sees a reset).

Beside counted rules, ``FaultRates`` fire at random (seeded) on every API request: the
chaos tests and ``ehr-bridge sim serve --fail-rate ...`` use them, and they can be changed
while the simulator runs through ``PUT /_sim/faults``. ``counts`` tells how many of each
kind fired, so a test can show the faults really happened.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

FaultKind = Literal["status", "drop", "delay", "reset"]


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


@dataclass
class FaultRates:
    """Probabilities (0..1) per API request, plus latency; all zero means no faults."""

    error_5xx: float = 0.0  # 503 before touching the state
    rate_limit_429: float = 0.0  # 429 with Retry-After before touching the state
    reset: float = 0.0  # connection closed before the state is touched
    ambiguous: float = 0.0  # writes only: committed, then the connection is dropped
    latency_ms: float = 0.0  # added to every API answer
    retry_after_seconds: float = 1.0

    @classmethod
    def from_json(cls, body: object) -> FaultRates:
        """Rates from a JSON object; unknown keys or values out of range raise ValueError."""
        if not isinstance(body, dict):
            raise ValueError("faults must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ValueError(f"unknown fault setting {unknown[0]}")
        rates = cls(**{k: float(v) for k, v in body.items()})
        for name in ("error_5xx", "rate_limit_429", "reset", "ambiguous"):
            if not 0.0 <= getattr(rates, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if rates.latency_ms < 0 or rates.retry_after_seconds < 0:
            raise ValueError("latency_ms and retry_after_seconds must not be negative")
        return rates

    def to_json(self) -> dict[str, float]:
        """The rates as JSON."""
        return asdict(self)


class FaultPlan:
    """The active fault rules, consumed first-added first, shared by request threads."""

    def __init__(self, rates: FaultRates | None = None, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._rng = random.Random(seed)
        self.rates = rates or FaultRates()
        #: how many faults have fired, for assertions
        self.fired = 0
        #: fired faults by kind (status_503, status_429, drop, delay, reset)
        self.counts: Counter[str] = Counter()

    def set_rates(self, rates: FaultRates) -> None:
        """Replace the random fault rates (the control endpoint and tests)."""
        with self._lock:
            self.rates = rates

    def snapshot(self) -> dict[str, Any]:
        """Rates and counts, for ``GET /_sim/faults``."""
        with self._lock:
            return {"rates": self.rates.to_json(), "fired": dict(self.counts)}

    def roll(self, method: str) -> Fault | None:
        """A random fault for this request, or None; writes alone can be ambiguous."""
        with self._lock:
            rates, draw = self.rates, self._rng.random()
            threshold = 0.0
            for probability, fault in (
                (rates.reset, Fault("reset")),
                (rates.error_5xx, Fault("status", status=503)),
                (
                    rates.rate_limit_429,
                    Fault("status", status=429, retry_after=rates.retry_after_seconds),
                ),
                (rates.ambiguous if method == "POST" else 0.0, Fault("drop")),
            ):
                threshold += probability
                if draw < threshold:
                    self._count(fault)
                    return fault
            return None

    def _count(self, fault: Fault) -> None:
        self.fired += 1
        self.counts[fault.kind if fault.kind != "status" else f"status_{fault.status}"] += 1

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
        """The rule that fires for this API request, if any: counted rules first, then rates."""
        with self._lock:
            for rule in self._rules:
                if rule.times > 0 and rule.matches(method, template):
                    rule.times -= 1
                    self._count(rule)
                    return rule
        return self.roll(method)
