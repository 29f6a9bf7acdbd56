"""Start-up on a machine at fault: wait for the state database instead of exiting.

A daemon started while the disk is full, the database file cannot be created, or the
PostgreSQL server is down or unreachable does not exit (systemd would restart it in a loop,
and the operator would see only a traceback). ``until_ready`` runs the step that needs the
database (opening the store, freeing the leases of dead processes) again and again, with
a backoff from one second to thirty, logging each failure with a reason from a closed list
and reporting it to ``on_wait`` (the daemon's ``/healthz`` says "waiting" with the reason),
until the step succeeds or stop is set. A configuration problem (a missing key, an old
schema) is not waited for: it raises as ever and the daemon exits 2.

The step runs in a helper thread, so a connect that hangs (a database host that drops
packets) cannot keep SIGTERM from being honoured.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_DELAY_SECONDS = 1.0
MOST_DELAY_SECONDS = 30.0
_POLL_SECONDS = 0.2

#: what a driver's message says, mapped to our reason; the message itself is never shown
_REASONS = (
    (("disk is full", "no space left"), "disk_full"),
    (("readonly", "read-only", "permission denied"), "not_writable"),
    (("unable to open", "no such file", "not a directory"), "cannot_open"),
    (("connection refused", "could not connect", "connection failed", "timeout"), "unreachable"),
    (("database is locked",), "locked"),
)
_ERRNO_REASONS = {
    errno.ENOSPC: "disk_full",
    errno.EDQUOT: "disk_full",
    errno.EACCES: "not_writable",
    errno.EPERM: "not_writable",
    errno.EROFS: "not_writable",
}


def database_fault(exc: BaseException) -> str:
    """Why the database failed, as a code from a closed list (never the driver's text)."""
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
        return _ERRNO_REASONS.get(exc.errno or 0, "cannot_open")
    text = str(getattr(exc, "orig", None) or exc).lower()
    for phrases, reason in _REASONS:
        if any(phrase in text for phrase in phrases):
            return reason
    return "unavailable"


class _Attempt(Generic[T]):
    """One run of the step in its own thread."""

    def __init__(self, step: Callable[[], T]) -> None:
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._step = step

    def run(self) -> None:
        try:
            self.result = self._step()
        except BaseException as exc:  # handed back to the waiting thread
            self.error = exc
        finally:
            self.done.set()


def _attempt(step: Callable[[], T], stop: threading.Event) -> _Attempt[T] | None:
    """Run ``step`` once; None if stop was set before it finished."""
    attempt = _Attempt(step)
    threading.Thread(target=attempt.run, name="startup", daemon=True).start()
    while not attempt.done.wait(_POLL_SECONDS):
        if stop.is_set():
            return None
    return attempt


def until_ready(
    step: Callable[[], T],
    stop: threading.Event,
    *,
    what: str,
    on_wait: Callable[[str], None] | None = None,
    first_delay: float = FIRST_DELAY_SECONDS,
) -> T | None:
    """``step()``, tried until it works; None if stop is set first.

    Database faults (``SQLAlchemyError``, ``OSError``) are waited out; anything else
    (a ``ConfigError``, a bug) is raised at once.
    """
    delay, failures = first_delay, 0
    while not stop.is_set():
        attempt = _attempt(step, stop)
        if attempt is None:
            break
        if attempt.error is None:
            if failures:
                log.info("state database available: %s goes on", what)
            return attempt.result
        if not isinstance(attempt.error, SQLAlchemyError | OSError):
            raise attempt.error
        failures += 1
        reason = database_fault(attempt.error)
        log.warning(
            "state database unavailable (%s, %s) during %s: waiting %g s, then trying again",
            reason,
            type(attempt.error).__name__,
            what,
            delay,
            extra={"reason": reason, "attempt": failures},
        )
        if on_wait is not None:
            on_wait(reason)
        stop.wait(delay)
        delay = min(delay * 2, MOST_DELAY_SECONDS)
    log.info("stopped while waiting for the state database")
    return None
