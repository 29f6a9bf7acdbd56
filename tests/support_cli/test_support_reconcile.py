"""The reconcile engine against the in-memory fake trust: every state and every repair."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.memory import MemoryTrust
from ehr_bridge.adapters.registry import ALL_WRITES, SUPPORT_CAPABILITIES
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.errors import ConfigError, TransientError
from ehr_bridge.mapping import load_mapping
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.sim.platform import SyntheticPlatform
from ehr_bridge.store import Store
from ehr_bridge.sync.collect import collect
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.deliver import deliver
from ehr_bridge.sync.pull import pull
from ehr_bridge.sync.push import push
from ehr_bridge.sync.reconcile import (
    ReferralReport,
    RepairOptions,
    reconcile,
    referrals_to_check,
)

EVERYTHING = ALL_WRITES | SUPPORT_CAPABILITIES | {"find_by_reference", "updated_since"}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MemoryTrust]:
    """One settled store and trust, built once; each test works on a copy."""
    root = tmp_path_factory.mktemp("reconcile")
    records = [
        e["referral"]
        for e in TrustSimulator(seed=12, referrals=3).export()["referrals"]
        if e["referral"]["referred_on_to"] == "IESO01"
    ]
    trust = MemoryTrust(records)
    conn = connection(root, trust)
    store = Store(f"sqlite:///{root / 'state.db'}")
    pull(conn, store)
    deliver(conn, store)
    SyntheticPlatform(root / "provider", seed=12).step()
    collect(conn, store)
    push(conn, store)
    store.close()
    return root, trust


def connection(root: Path, trust: MemoryTrust) -> Connection:
    return Connection(
        name="fake",
        mapping=load_mapping(bundled_mapping("iaptus.yaml")),
        source=trust,
        writer=trust,
        provider=FolderProvider(root / "provider"),
        provider_ref=ProviderRef(code="IESO01", display="Provider"),
        test_connection=True,  # synthetic patients: test-range NHS numbers
        capabilities=EVERYTHING,
    )


@pytest.fixture
def setup(
    template: tuple[Path, MemoryTrust], tmp_path: Path
) -> Iterator[tuple[Connection, Store, MemoryTrust]]:
    root, trust = template
    shutil.copy(root / "state.db", tmp_path / "state.db")
    copied = copy.deepcopy(trust)
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    yield connection(root, copied), store, copied
    store.close()


def run(conn: Connection, store: Store, **options: object) -> list[ReferralReport]:
    rows = referrals_to_check(store, conn.name)
    return reconcile(conn, store, rows, RepairOptions(actor="tester", **options))  # type: ignore[arg-type]


def states(reports: list[ReferralReport]) -> list[tuple[str, str, str | None]]:
    return sorted(
        (f.kind, f.state, f.repair) for r in reports for f in r.findings if f.state != "in_sync"
    )


def key_of(trust: MemoryTrust, kind: str) -> tuple[str, str, str]:
    return next(k for k in trust.items if k[1] == kind)


def test_everything_written_is_in_sync(setup: tuple[Connection, Store, MemoryTrust]) -> None:
    conn, store, _ = setup
    reports = run(conn, store)
    assert reports and {r.verdict for r in reports} == {"in sync"}
    assert sum(len(r.findings) for r in reports) == len(store.outbox_rows(connection="fake"))


def test_missing_is_requeued_and_written_again(
    setup: tuple[Connection, Store, MemoryTrust],
) -> None:
    conn, store, trust = setup
    key = key_of(trust, "clinical_note")
    deleted = trust.items.pop(key)
    assert states(run(conn, store)) == [("clinical_note", "missing", None)]
    assert states(run(conn, store, repair=True)) == [("clinical_note", "missing", "requeued")]
    push(conn, store)
    assert states(run(conn, store)) == []
    assert trust.items[key]["text"] == deleted["text"] and trust.items[key]["id"] != deleted["id"]


def test_changed_is_overwritten_only_with_force(
    setup: tuple[Connection, Store, MemoryTrust],
) -> None:
    conn, store, trust = setup
    key = key_of(trust, "assessment")
    original = dict(trust.items[key])
    trust.items[key]["score"] = original["score"] + 1
    (report,) = [r for r in run(conn, store, repair=True) if r.drift]
    (changed,) = report.drift
    assert changed.fields == ["score"] and changed.repair is None and "--force" in changed.note
    assert report.verdict == "drift"
    assert states(run(conn, store, repair=True, force=True)) == [
        ("assessment", "changed", "overwritten")
    ]
    assert trust.items[key] == original
    assert states(run(conn, store)) == []


def test_without_the_update_capability_nothing_is_overwritten(
    setup: tuple[Connection, Store, MemoryTrust],
) -> None:
    conn, store, trust = setup
    trust.items[key_of(trust, "assessment")]["score"] = 99
    limited = replace(conn, capabilities=EVERYTHING - {"update_items"})
    (finding,) = [f for r in run(limited, store, repair=True, force=True) for f in r.drift]
    assert finding.repair is not None and "cannot update" in finding.repair


def test_a_dead_letter_the_trust_holds_is_adopted(
    setup: tuple[Connection, Store, MemoryTrust],
) -> None:
    conn, store, trust = setup
    key = key_of(trust, "care_contact")
    store.finish_attempt(key[2], state="dead", error="gave up", error_code="http_503")
    found = states(run(conn, store))
    assert [f for f in found if f[0] == "care_contact"] == [("care_contact", "unexpected", None)]
    assert {f[1] for f in found if f[0] != "care_contact"} <= {"unchecked"}  # its note, scores
    found = states(run(conn, store, repair=True))
    assert [f for f in found if f[0] == "care_contact"] == [
        ("care_contact", "unexpected", "adopted")
    ]
    assert states(run(conn, store)) == []
    row = store.outbox_row(key[2])
    assert row is not None and row.state == "done" and row.trust_id == trust.items[key]["id"]


def test_cancelled_items_and_stray_references_are_unexpected_and_left_alone(
    setup: tuple[Connection, Store, MemoryTrust],
) -> None:
    conn, store, trust = setup
    key = key_of(trust, "clinical_note")
    store.finish_attempt(key[2], state="dead", error="refused", error_code="http_422")
    store.cancel(key[2], "should not have been written", actor="tester")
    trust.items[(key[0], "clinical_note", "f" * 32)] = {"id": "M999999", "text": "x"}
    trust.items[(key[0], "clinical_note", "trust-own-note")] = {"id": "M999998", "text": "y"}
    found = states(run(conn, store, repair=True))
    assert found == [("clinical_note", "unexpected", None), ("clinical_note", "unexpected", None)]


def test_an_unreadable_trust_is_an_error_not_a_verdict(
    setup: tuple[Connection, Store, MemoryTrust],
) -> None:
    conn, store, trust = setup

    def broken(trust_referral_id: str, kind: str) -> list[object]:
        raise TransientError("GET /referrals/{id}/care-contacts: HTTP 503")

    trust.list_items = broken  # type: ignore[method-assign, assignment]
    reports = run(conn, store)
    assert {r.verdict for r in reports} == {"error"}
    assert all("503" in (r.error or "") for r in reports)


def test_a_connection_that_cannot_read_back_is_refused(
    setup: tuple[Connection, Store, MemoryTrust],
) -> None:
    conn, store, _ = setup
    with pytest.raises(ConfigError, match="read_items"):
        run(replace(conn, capabilities=ALL_WRITES), store)


def test_since_and_referral_narrow_what_is_checked(
    setup: tuple[Connection, Store, MemoryTrust],
) -> None:
    _, store, _ = setup
    everything = referrals_to_check(store, "fake")
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    assert len(everything) >= 2
    assert referrals_to_check(store, "fake", since=tomorrow) == []
    one = referrals_to_check(store, "fake", referral_id=everything[0].id)
    assert [r.id for r in one] == [everything[0].id]
