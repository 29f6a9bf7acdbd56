"""Deliver keeps up: one run empties a queue of any length, a page at a time.

A backlog larger than deliver's page used to wait one deliver interval per page (2,000
referrals took 186 s to reach the provider in the daemon). The queue is walked page by
page until it is empty; a referral that fails is tried once per run, not in a loop; a
referral changed behind the one in hand (another daemon's pull) still goes in the same
run; stop ends the run between two referrals. On SQLite and PostgreSQL (the paging key
is a timestamp and an id).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from ehr_bridge.adapters.base import ProviderSubmission
from ehr_bridge.adapters.memory import MemoryTrust
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.errors import TransientError
from ehr_bridge.mapping import load_mapping
from ehr_bridge.store import PulledReferral, ReferralRow, Store
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.deliver import deliver
from support.databases import BACKENDS, database_url

JsonDict = dict[str, Any]


class Platform:
    """A provider that records what it was handed; it can fail one referral or act mid-run."""

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.failing: set[str] = set()
        self.on_delivery: Any = None

    def deliver_referral(self, service_request_id: str, bundle: JsonDict) -> None:
        if service_request_id in self.failing:
            self.delivered.append(f"failed:{service_request_id}")
            raise TransientError("the platform is busy")
        self.delivered.append(service_request_id)
        if self.on_delivery is not None:
            self.on_delivery(len(self.delivered))

    def pending_submissions(self) -> Iterator[ProviderSubmission]:
        return iter(())

    def acknowledge(self, handle: str) -> None:
        """Nothing is ever offered."""


class PagesCounted(Store):
    """The store, counting the pages deliver reads and the most rows one page held."""

    pages = 0
    largest = 0

    def referrals_to_deliver(self, *args: Any, **kwargs: Any) -> list[ReferralRow]:
        page = super().referrals_to_deliver(*args, **kwargs)
        self.pages += 1
        self.largest = max(self.largest, len(page))
        return page


def _pulled(n: int) -> PulledReferral:
    patient = {"resourceType": "Patient", "id": f"p-{n}"}
    request = {
        "resourceType": "ServiceRequest",
        "id": f"sr-{n:05d}",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/p-{n}"},
    }
    return PulledReferral(f"R{n}", f"h{n}", "1", "active", f"L{n}", None, patient, request)


def _queued(store: Store, count: int, page: int = 200) -> None:
    """``count`` referrals pulled in pages (so first-pulled times differ between pages)."""
    for start in range(0, count, page):
        batch = [_pulled(n) for n in range(start, min(start + page, count))]
        store.save_pull_page("c", batch, [], None)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PagesCounted]:
    opened = PagesCounted(database_url(request.param, tmp_path))
    yield opened
    opened.close()


@pytest.fixture
def platform() -> Platform:
    return Platform()


@pytest.fixture
def conn(platform: Platform) -> Connection:
    trust = MemoryTrust()
    return Connection(
        name="c",
        mapping=load_mapping(bundled_mapping("iaptus.yaml")),
        source=trust,
        writer=trust,
        provider=platform,
        provider_ref=ProviderRef(code="IESO01", display="Provider"),
        test_connection=True,
    )


def test_one_run_empties_a_queue_larger_than_its_page(
    conn: Connection, store: PagesCounted, platform: Platform
) -> None:
    # on PostgreSQL a tenth of it: the same pages over its timestamps, in a third the time
    count, page = (1_200, 500) if store.engine.dialect.name == "sqlite" else (120, 50)
    _queued(store, count)
    counts = deliver(conn, store, page_size=page)
    assert (counts.delivered, counts.failed) == (count, 0)
    assert sorted(platform.delivered) == [f"sr-{n:05d}" for n in range(count)]  # each once
    assert store.referrals_to_deliver("c") == []
    # bounded memory: never more than a page in hand; three pages, then a look for more
    assert store.largest == page
    assert 3 <= store.pages <= 5


def test_a_failing_referral_is_tried_once_per_run_and_holds_up_no_other(
    conn: Connection, store: PagesCounted, platform: Platform
) -> None:
    _queued(store, 30)
    platform.failing = {"sr-00003", "sr-00017"}
    counts = deliver(conn, store, page_size=7)
    assert (counts.delivered, counts.failed) == (28, 2)
    assert platform.delivered.count("failed:sr-00003") == 1  # not retried within the run
    assert [r.id for r in store.referrals_to_deliver("c")] == ["sr-00003", "sr-00017"]
    platform.failing = set()
    assert deliver(conn, store, page_size=7).delivered == 2  # the next run takes them


def test_a_referral_changed_behind_the_one_in_hand_goes_in_the_same_run(
    conn: Connection, store: PagesCounted, platform: Platform
) -> None:
    _queued(store, 12)

    def another_daemon_pulls(delivered: int) -> None:
        if delivered == 10:  # sr-00002 went out already; a pull elsewhere changes it
            with store.session() as s:
                s.exec(
                    update(ReferralRow)
                    .where(ReferralRow.id == "sr-00002")  # type: ignore[arg-type]
                    .values(fhir_hash="changed")
                )

    platform.on_delivery = another_daemon_pulls
    counts = deliver(conn, store, page_size=5)
    assert (counts.delivered, counts.redelivered) == (12, 1)
    assert platform.delivered.count("sr-00002") == 2
    assert store.referrals_to_deliver("c") == []


def test_stop_ends_the_run_between_two_referrals(
    conn: Connection, store: PagesCounted, platform: Platform
) -> None:
    _queued(store, 40)
    stop = threading.Event()
    platform.on_delivery = lambda delivered: stop.set() if delivered == 15 else None
    assert deliver(conn, store, stop, page_size=10).delivered == 15
    assert len(store.referrals_to_deliver("c")) == 25  # the next run goes on
