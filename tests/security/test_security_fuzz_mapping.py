"""Fuzz: any trust record ends as a mapped referral or a quarantine entry with a reason."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from security_flow import referral_records
from security_fuzz_budget import FUZZ, JSON

from ehr_bridge.adapters.base import SourcePage
from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.memory import MemoryTrust
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.domain.referral import ProviderRef, build_referral_resources
from ehr_bridge.errors import RecordError
from ehr_bridge.mapping import load_mapping
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.pull import pull

MAPPING = load_mapping(bundled_mapping("iaptus.yaml"))
PROVIDER = ProviderRef(code="IESO01", display="Provider")
GOOD = referral_records(5, 3)
RECORDS_SEEN = [0]


class OnePage:
    """A trust that answers with exactly these records, whatever they are."""

    def __init__(self, records: list[Any]) -> None:
        self.records = records

    def fetch_referrals(self, *, updated_since: Any, page: str | None) -> SourcePage:
        return SourcePage(records=self.records, next_page=None)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*prefix, index))
    return found


@st.composite
def hostile_records(draw: st.DrawFn) -> Any:
    """A good record with a few fields replaced, removed or added; or any JSON at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    record = copy.deepcopy(draw(st.sampled_from(GOOD)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(record)
        path = draw(st.sampled_from(paths))
        parent = record
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace" or isinstance(parent, list):
            parent[path[-1]] = draw(JSON)
        elif action == "delete":
            del parent[path[-1]]
        else:
            parent[draw(st.text(max_size=10))] = draw(JSON)
    return record


def _outcome(record: Any) -> str:
    """``mapped`` or the quarantine reason: the two ends pull knows, nothing else."""
    if not isinstance(record, dict):
        return "not an object"
    try:
        facts = MAPPING.referral_facts(record)
        build_referral_resources("fuzz", PROVIDER, facts, allow_test_range=True)
    except RecordError as exc:
        assert exc.code and exc.safe_message
        return exc.safe_message
    return "mapped"


@FUZZ
@given(hostile_records())
def test_fuzz_any_record_maps_or_is_refused_with_a_reason(record: Any) -> None:
    RECORDS_SEEN[0] += 1
    assert _outcome(record)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    root = tmp_path_factory.mktemp("fuzz")
    store = Store(f"sqlite:///{root / 'state.db'}")
    yield store, root
    store.close()


@FUZZ
@given(records=st.lists(hostile_records(), min_size=1, max_size=6))
def test_fuzz_a_page_of_hostile_records_commits_every_one_somewhere(
    shared: tuple[Store, Path], records: list[Any]
) -> None:
    store, root = shared
    RECORDS_SEEN[0] += 1
    name = f"fuzz{RECORDS_SEEN[0]}"  # a connection per case: no hash or cursor carries over
    conn = Connection(
        name=name,
        mapping=MAPPING,
        source=OnePage(records),
        writer=MemoryTrust(),
        provider=FolderProvider(root / "provider"),
        provider_ref=PROVIDER,
        test_connection=True,  # synthetic patients: test-range NHS numbers
    )
    counts = pull(conn, store)
    quarantined = store.quarantine_rows(connection=name, state=None)
    assert counts.seen == len(records)
    # every record is stored, unchanged, quarantined, an earlier copy of one the page held
    # again (collapsed, with a note), or left alone on purpose: none is lost
    accounted = counts.stored + counts.quarantined + counts.unchanged + counts.collapsed
    accounted += counts.skipped_not_ours + counts.skipped_unknown_cancels + counts.echoes
    assert accounted == counts.seen
    assert len(quarantined) >= min(counts.quarantined, 1)
    assert all(q.reason and q.code for q in quarantined)
    assert all(q.code != "internal_error" for q in quarantined), [q.reason for q in quarantined]
    assert len(store.list_referrals(name)) <= counts.stored
