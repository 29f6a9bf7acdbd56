"""Retry policies as data, and the deadlines and stop signal every wait and call obeys.

Two places retry: a read inside one call (tenacity, a few quick attempts, because a
GET is safe to repeat) and a write-back item across cycles (the outbox row keeps its
attempt count and next time, so one failing item never holds up the others).

Every flow run happens inside a ``flow_scope``: the process's stop event and the run's
deadline (``[connection.schedule] flow_deadline_seconds``), carried by a context
variable, so the push worker threads (which copy the context) see it too and no adapter
method needs another parameter. Three things read it:

- ``pause`` is every backoff sleep: it waits on the stop event, not ``time.sleep``, and
  gives up at once when the wait would end past the run's deadline.
- ``watched`` guards one outbound call (an HTTP request, an MLLP exchange): a watchdog
  thread closes what the call registered (its socket) when the call's whole-request
  deadline or the run's deadline passes, or ``STOP_GRACE_SECONDS`` after stop is set, so
  a peer that drips one byte a second or never answers cannot hold the call.
- ``check_scope`` refuses to start a call once stop is set or the deadline has passed.

The errors are ``CallDeadlineError`` (retried like any transient failure),
``StoppedError`` and ``FlowDeadlineError`` (``AbandonedError``: never retried within
the run; see ``ehr_bridge.errors``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
)

from ehr_bridge.errors import (
    AbandonedError,
    CallDeadlineError,
    FlowDeadlineError,
    StoppedError,
    TransientError,
)

T = TypeVar("T")

#: how long a call already at the peer may still finish once stop is set
STOP_GRACE_SECONDS = 2.0
#: how often the watchdog looks at the stop events of the calls it guards
_WATCH_POLL_SECONDS = 0.1


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
    """Run a safe-to-repeat call, retrying TransientError per the policy, then re-raise.

    The waits between attempts are ``pause``: stop ends them at once, and a wait that
    would pass the run's deadline is not begun. Abandoned work is never retried.
    """
    retrying = Retrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=_wait_for(policy),
        retry=retry_if_exception_type(TransientError) & retry_if_not_exception_type(AbandonedError),
        sleep=pause,
        reraise=True,
    )
    return retrying(fn)


# --- the flow run's scope ------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The stop event and deadline (a ``time.monotonic`` value) of the run in hand."""

    stop: threading.Event | None = None
    deadline: float | None = None
    flow: str = ""
    seconds: float | None = None

    def stopping(self) -> bool:
        """True once the process has been asked to stop."""
        return self.stop is not None and self.stop.is_set()

    def expired(self, now: float | None = None) -> bool:
        """True once the run's deadline has passed."""
        clock = time.monotonic() if now is None else now
        return self.deadline is not None and clock >= self.deadline

    def stopped_error(self, what: str, *, ambiguous: bool = False) -> StoppedError:
        """The error for work ``what`` given up because the process is stopping."""
        return StoppedError(f"{what}: abandoned, ehr-bridge is stopping", ambiguous=ambiguous)

    def deadline_error(self, what: str, *, ambiguous: bool = False) -> FlowDeadlineError:
        """The error for work ``what`` given up at the run's deadline."""
        run = f"the {self.flow} run" if self.flow else "the run"
        seconds = f" {self.seconds:g} s" if self.seconds is not None else ""
        return FlowDeadlineError(
            f"{what}: abandoned, {run} passed its{seconds} deadline"
            " ([connection.schedule] flow_deadline_seconds); the next run goes on",
            ambiguous=ambiguous,
        )


#: outside any flow run: no stop event, no deadline
UNBOUNDED = Scope()
_scope: ContextVar[Scope] = ContextVar("ehr_bridge_scope", default=UNBOUNDED)


def current_scope() -> Scope:
    """The scope of the run in hand (an unbounded one outside any run)."""
    return _scope.get()


@contextmanager
def flow_scope(
    flow: str, seconds: float | None, stop: threading.Event | None = None
) -> Iterator[Scope]:
    """Run the block as flow ``flow``: ``stop`` and a deadline ``seconds`` from now.

    Nested inside another scope, the earlier deadline and the outer stop event still hold.
    """
    outer = _scope.get()
    deadline = None if seconds is None else time.monotonic() + seconds
    if outer.deadline is not None and (deadline is None or outer.deadline < deadline):
        deadline, seconds = outer.deadline, outer.seconds
    scope = Scope(stop=stop or outer.stop, deadline=deadline, flow=flow, seconds=seconds)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def check_scope(what: str) -> None:
    """Refuse to begin ``what`` once stop is set or the run's deadline has passed.

    Raises:
        StoppedError: the process is stopping.
        FlowDeadlineError: the run's deadline has passed.
    """
    scope = _scope.get()
    if scope.stopping():
        raise scope.stopped_error(what)
    if scope.expired():
        raise scope.deadline_error(what)


def pause(seconds: float) -> None:
    """A backoff wait: ended by stop at once, never begun if it would pass the deadline.

    Raises:
        StoppedError: stop was set before or during the wait.
        FlowDeadlineError: the wait would end after the run's deadline.
    """
    scope = _scope.get()
    check_scope("backoff")
    if scope.deadline is not None and time.monotonic() + seconds > scope.deadline:
        raise scope.deadline_error("backoff")
    if scope.stop is None:
        time.sleep(seconds)
    elif scope.stop.wait(seconds):
        raise scope.stopped_error("backoff")


# --- one outbound call under a watchdog ----------------------------------------------


class Watch:
    """One outbound call in flight: fires once, at its deadline or a grace after stop.

    Firing runs every closer the call registered (``hold``), typically shutting down its
    socket, which wakes the thread blocked in it. The call then asks ``error`` what to raise.
    """

    def __init__(
        self, seconds: float, scope: Scope, *, now: float | None = None, what: str = ""
    ) -> None:
        start = time.monotonic() if now is None else now
        self.seconds = seconds
        self.scope = scope
        self.what = what
        self.deadline = start + seconds
        #: True when the run's deadline, not the call's own, is the nearer one
        self.flow_bound = scope.deadline is not None and scope.deadline < self.deadline
        if self.flow_bound and scope.deadline is not None:
            self.deadline = scope.deadline
        #: why the watch fired: "deadline" or "stopped"; None while it has not
        self.fired: str | None = None
        self._stop_seen: float | None = None
        self._closers: list[Callable[[], None]] = []
        self._done = False
        self._lock = threading.Lock()

    def remaining(self) -> float:
        """Seconds left before the deadline (0 once it has passed)."""
        return max(self.deadline - time.monotonic(), 0.0)

    def hold(self, close: Callable[[], None]) -> None:
        """Close ``close`` when the watch fires (at once, if it already has)."""
        with self._lock:
            if self.fired is None:
                self._closers.append(close)
                return
        _quietly(close)

    def check(self) -> None:
        """Raise the call's error if the watch fired or its deadline passed (per chunk)."""
        if self.fired is not None or time.monotonic() >= self.deadline:
            raise self.error(self.what)

    def error(self, what: str, *, ambiguous: bool = False) -> TransientError:
        """What to raise for a call that the watch ended (or that outlived its deadline)."""
        if self.fired == "stopped":
            return self.scope.stopped_error(what, ambiguous=ambiguous)
        if self.flow_bound:
            return self.scope.deadline_error(what, ambiguous=ambiguous)
        return CallDeadlineError(
            f"{what}: no complete answer within {self.seconds:g} s (timeout_seconds)",
            ambiguous=ambiguous,
        )

    def due(self, now: float) -> str | None:
        """Why the watch should fire now, if it should (the watchdog asks)."""
        if now >= self.deadline:
            return "deadline"
        if self.scope.stopping():
            if self._stop_seen is None:
                self._stop_seen = now
            if now >= self._stop_seen + STOP_GRACE_SECONDS:
                return "stopped"
        return None

    def fire(self, reason: str) -> None:
        """Mark the watch fired and run its closers (once; never after ``finish``)."""
        with self._lock:
            if self._done or self.fired is not None:
                return
            self.fired = reason
            closers, self._closers = self._closers, []
        for close in closers:
            _quietly(close)

    def finish(self) -> None:
        """The call is over: a later deadline closes nothing."""
        with self._lock:
            self._done = True
            self._closers = []


def _quietly(close: Callable[[], None]) -> None:
    with suppress(OSError):  # already closed, or never connected: nothing to wake
        close()


class _Watchdog:
    """One daemon thread that fires the watches of every call in flight in the process."""

    def __init__(self) -> None:
        self._watches: set[Watch] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, watch: Watch) -> None:
        with self._wake:
            self._watches.add(watch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
                self._thread.start()
            self._wake.notify()

    def remove(self, watch: Watch) -> None:
        with self._wake:
            self._watches.discard(watch)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._watches:
                    self._wake.wait()
                now = time.monotonic()
                due = [(w, why) for w in self._watches if (why := w.due(now)) is not None]
                for watch, _ in due:
                    self._watches.discard(watch)
                if not due:
                    nearest = min(w.deadline for w in self._watches) - now
                    self._wake.wait(min(max(nearest, 0.0), _WATCH_POLL_SECONDS))
                    continue
            for watch, why in due:
                watch.fire(why)


_WATCHDOG = _Watchdog()


@contextmanager
def watched(seconds: float, what: str) -> Iterator[Watch]:
    """Guard one outbound call of at most ``seconds`` (and within the run's deadline).

    Raises:
        StoppedError, FlowDeadlineError: before the call, when it must not begin.
    """
    check_scope(what)
    watch = Watch(seconds, _scope.get(), what=what)
    _WATCHDOG.add(watch)
    try:
        yield watch
    finally:
        watch.finish()
        _WATCHDOG.remove(watch)
