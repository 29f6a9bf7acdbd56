"""Retry policies as data.

Two places retry: a read inside one call (tenacity, a few quick attempts, because a
GET is safe to repeat) and a write-back item across cycles (the outbox row keeps its
attempt count and next time, so one failing item never holds up the others).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from ehr_bridge.errors import TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, honouring the server's Retry-After."""

    max_attempts: int = 8
    base_delay: float = 5.0
    max_delay: float = 900.0

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after ``attempt`` failed attempts (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(attempt - 1, 0)))
        jittered = (rng or random).uniform(0, ceiling)
        return max(jittered, retry_after or 0.0)

    def exhausted(self, attempts: int) -> bool:
        """True once an item has had all its attempts."""
        return attempts >= self.max_attempts


def _wait_for(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = error.retry_after if isinstance(error, TransientError) else None
        # a huge Retry-After must not turn one read into a hang: never wait past max_delay
        return min(policy.delay(state.attempt_number, retry_after), policy.max_delay)

    return wait


def call_with_retries(policy: RetryPolicy, fn: Callable[[], T]) -> T:
    """Run a safe-to-repeat call, retrying TransientError per the policy, then re-raise."""
    retrying = Retrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=_wait_for(policy),
        retry=retry_if_exception_type(TransientError),
        reraise=True,
    )
    return retrying(fn)
