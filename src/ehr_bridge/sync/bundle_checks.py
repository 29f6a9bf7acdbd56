"""Checking provider bundles, in this process or in a small pool of worker processes.

Full FHIR validation of an untrusted session bundle costs about 7 ms (parse plus the
canonical dump of eight resources), several times what storing it costs once writes are
set-based. A backlog of many thousand bundles is therefore checked in worker processes,
one per core, while this process reads files and writes the previous batch.

The check is pure (no store, no logging, no files), so a worker can do nothing but return
a verdict: a ``SessionArtefacts`` or a ``Refusal``. What it depends on beyond the bundle
travels as plain picklable values (``adsm_enabled`` is a bool, never the connection or a
``MappingProxyType`` measure table, which do not pickle). Nothing is stored or acknowledged
until its verdict is back in this process. If the pool breaks (a worker killed, out of
memory), the batch in hand is checked here instead and the pool is not used again this
run: a crash costs time, never a bundle.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ehr_bridge.domain.validate import SessionArtefacts, parse_session_bundle
from ehr_bridge.errors import RecordError, RecordValidationError

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]

#: environment variable that sets the worker count; 0 or 1 checks everything in process
WORKERS_ENV = "EHR_BRIDGE_COLLECT_WORKERS"


def default_workers() -> int:
    """Worker processes for a large backlog: one per core, at most two, unless set."""
    configured = os.environ.get(WORKERS_ENV, "").strip()
    if configured.isdigit():
        return int(configured)
    return min(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class Refusal:
    """Why a bundle cannot be stored, in PHI-free terms (picklable, unlike exceptions)."""

    code: str
    message: str
    field: str | None

    def error(self) -> RecordValidationError:
        """The refusal as the error it stands for (``safe_message`` names the field)."""
        return RecordValidationError(self.message, field=self.field, code=self.code)


Verdict = SessionArtefacts | Refusal


def check_bundle(bundle: JsonDict, *, adsm_enabled: bool = False) -> Verdict:
    """The checked artefacts of a bundle, or why it is refused (never raises for the bundle).

    ``adsm_enabled`` accepts the anxiety-disorder-specific measures (``[reports]
    adsm_enabled`` of the connection): without it their scores are refused.
    """
    try:
        unreadable = bundle.get("_unreadable")
        if unreadable:
            raise RecordValidationError(
                f"file unreadable ({unreadable})", field="(file)", code="unreadable"
            )
        return parse_session_bundle(bundle, adsm_enabled=adsm_enabled)
    except RecordError as exc:
        return Refusal(exc.code, exc.reason, exc.field)
    except Exception as exc:  # a shape nobody foresaw: refuse it by type, keep going
        return Refusal("internal_error", f"unexpected {type(exc).__name__}", None)


def check_bundles(bundles: Sequence[JsonDict], adsm_enabled: bool = False) -> list[Verdict]:
    """Verdicts for a chunk of bundles (one task for a worker)."""
    return [check_bundle(bundle, adsm_enabled=adsm_enabled) for bundle in bundles]


class PendingVerdicts:
    """The verdicts of one batch, being worked out by the pool or not started yet."""

    def __init__(
        self, checker: BundleChecker, bundles: list[JsonDict], futures: list[Future[Any]]
    ) -> None:
        self._checker = checker
        self._bundles = bundles
        self._futures = futures

    def result(self) -> list[Verdict]:
        """The verdicts in bundle order; waits for the pool, or checks here."""
        adsm = self._checker.adsm_enabled
        if not self._futures:
            return check_bundles(self._bundles, adsm)
        try:
            verdicts: list[Verdict] = []
            for future in self._futures:
                verdicts.extend(future.result())
            return verdicts
        except Exception as exc:  # BrokenProcessPool and kin: the batch is intact here
            self._checker.give_up_pool(exc)
            return check_bundles(self._bundles, adsm)


class BundleChecker:
    """Hands batches to worker processes once the backlog is large, else checks in place.

    ``workers`` below 2 never starts a pool. The pool starts once more than
    ``pool_after`` bundles were submitted in this run: a collect of a few hundred never
    pays the workers' start-up (about a second of imports each). It lives until ``close``.
    ``adsm_enabled`` is passed to every check (see ``check_bundle``).
    """

    def __init__(
        self, workers: int | None = None, *, pool_after: int = 400, adsm_enabled: bool = False
    ) -> None:
        self.workers = default_workers() if workers is None else workers
        self.adsm_enabled = adsm_enabled
        self.pool_after = pool_after
        self._submitted = 0
        self._pool: ProcessPoolExecutor | None = None
        self._usable = self.workers >= 2

    def __enter__(self) -> BundleChecker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def submit(self, bundles: list[JsonDict]) -> PendingVerdicts:
        """Start checking a batch; ``result()`` on the answer collects the verdicts."""
        self._submitted += len(bundles)
        pool = self._started_pool()
        if pool is None:
            return PendingVerdicts(self, bundles, [])
        size = -(-len(bundles) // (2 * self.workers))  # two chunks a worker: even load
        chunks = [bundles[i : i + size] for i in range(0, len(bundles), size)]
        try:
            futures = [pool.submit(check_bundles, chunk, self.adsm_enabled) for chunk in chunks]
        except Exception as exc:  # the pool broke before this batch: check it here
            self.give_up_pool(exc)
            futures = []
        return PendingVerdicts(self, bundles, futures)

    def _started_pool(self) -> ProcessPoolExecutor | None:
        if self._pool is None and self._usable and self._submitted > self.pool_after:
            context = multiprocessing.get_context("spawn")  # no fork of a threaded daemon
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
        return self._pool

    def give_up_pool(self, exc: BaseException) -> None:
        """Stop using the pool for this run (its batches fall back to this process)."""
        log.warning("bundle check pool failed (%s): checking in process", type(exc).__name__)
        self._usable = False
        self.close()

    def close(self) -> None:
        """Stop the worker processes, if any were started."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
