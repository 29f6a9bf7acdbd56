"""The set-based pull page writes exactly what the row-by-row path writes.

``save_pull_page`` sends plain referrals down a set-based path and the rest (merges,
operator links, NHS number changes, a patient twice on a page) down the careful one.
Generated histories of pages and operator links are applied to two stores, one with the
split and one with every referral forced down the careful path; every table must end the
same (ids of history rows and timestamps aside).
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

import ehr_bridge.store.pull_batch as pull_batch
from ehr_bridge.errors import ConflictError, TerminalError
from ehr_bridge.store import NewQuarantine, PulledReferral, Store
from support.databases import BACKENDS, database_url

TRUST_IDS = ["r1", "r2", "r3", "r4"]
PATIENTS = ["p1", "p2", "p3"]
NUMBERS = [None, "9434765919", "9434765870"]

referral_spec = st.tuples(
    st.sampled_from(TRUST_IDS),
    st.sampled_from(PATIENTS),
    st.sampled_from(NUMBERS),
    st.sampled_from(["h1", "h2", "h3"]),
)
page = st.tuples(
    st.lists(referral_spec, max_size=3),
    st.lists(st.sampled_from(TRUST_IDS), max_size=2),  # records quarantined on the page
)
operator_step = st.tuples(
    st.sampled_from(["link", "unlink"]), st.sampled_from(PATIENTS), st.sampled_from(PATIENTS)
)
history = st.lists(st.one_of(page, page, operator_step), min_size=2, max_size=8)


def _pulled(store: Store, spec: tuple[str, str, str | None, str]) -> PulledReferral:
    """What pull would hand the store: the record's patient, after operator links."""
    trust_id, natural, nhs, source_hash = spec
    effective = store.resolve_patient("c", None, f"L-{natural}").effective_id or natural
    patient: dict[str, Any] = {"resourceType": "Patient", "id": effective, "gender": "unknown"}
    if nhs:
        patient["identifier"] = [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}]
    request = {
        "resourceType": "ServiceRequest",
        "id": f"sr-{trust_id}",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{effective}"},
        "note": [{"text": source_hash}],
    }
    return PulledReferral(
        trust_id,
        source_hash,
        source_hash,
        "active",
        f"L-{natural}",
        nhs,
        patient,
        request,
        natural if natural != effective else None,
    )


def _apply(store: Store, step: Any, careful_only: bool) -> None:
    if step[0] in ("link", "unlink"):
        action, keep, other = step
        try:
            if action == "link":
                store.link_patients(keep, other, actor="t", reason="test")
            else:
                store.unlink_patient(other, actor="t", reason="test")
        except (ConflictError, TerminalError):
            pass
        return
    specs, held = step
    referrals = [_pulled(store, spec) for spec in specs]
    quarantines = [
        NewQuarantine("referral", ref, "code", "reason", "field", {"ref": ref}) for ref in held
    ]
    forced: AbstractContextManager[Any] = (
        patch.object(pull_batch, "split_page", lambda _s, page: ([], list(page)))
        if careful_only
        else nullcontext()
    )
    with forced:
        store.save_pull_page("c", referrals, quarantines, None)


_TABLES = {
    "patient": "id, connection, local_id, nhs_number, active, merged_into",
    "referral": "id, trust_referral_id, patient_id, natural_patient_id, source_hash,"
    " source_version, fhir_hash, status",
    "resource": "resource_type, id, connection, referral_id, body, content_hash",
    "referral_version": "referral_id, source_version, source_hash, fhir_hash, patient_id, status",
    "quarantine": "record_ref, state, payload_hash",
    "patient_link": "patient_id, other_patient_id, kind, referral_id, ended_at IS NULL",
    "audit_event": "action, referral_id, patient_id, detail",
}


def _contents(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    with store.engine.connect() as connection:
        return {
            table: sorted(
                (tuple(row) for row in connection.execute(text(f"SELECT {cols} FROM {table}"))),
                key=repr,
            )
            for table, cols in _TABLES.items()
        }


@pytest.fixture(scope="module")
def empty_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file to copy (migrating for every example would be slow)."""
    path = tmp_path_factory.mktemp("template") / "empty.db"
    Store(f"sqlite:///{path}").close()
    return path


@settings(
    max_examples=100,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=history)
def test_the_set_based_path_writes_what_the_careful_path_writes(
    empty_database: Path, steps: list[Any]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name in ("split.db", "careful.db"):
            shutil.copy(empty_database, Path(folder) / name)
        split = Store(f"sqlite:///{Path(folder) / 'split.db'}")
        careful = Store(f"sqlite:///{Path(folder) / 'careful.db'}")
        try:
            for step in steps:
                _apply(split, step, careful_only=False)
                _apply(careful, step, careful_only=True)
            assert _contents(split) == _contents(careful)
        finally:
            split.close()
            careful.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    store = Store(database_url(request.param, tmp_path))
    yield store
    store.close()


def test_a_page_with_a_patient_twice_and_a_merge_stores_every_referral(store: Store) -> None:
    first = [_pulled(store, (t, "p1", None, "h1")) for t in ("r1", "r2")]
    store.save_pull_page("c", first, [], "2026-01-01T00:00:00Z")
    moved = _pulled(store, ("r1", "p2", None, "h2"))  # the trust merged r1 onto p2
    new = _pulled(store, ("r3", "p3", "9434765919", "h1"))
    changes = store.save_pull_page("c", [moved, new], [], "2026-01-02T00:00:00Z")
    assert changes == [("sr-r1", "patient_changed")]
    rows = {r.trust_referral_id: r.patient_id for r in store.list_referrals("c")}
    assert rows == {"r1": "p2", "r2": "p1", "r3": "p3"}
    assert store.patient("p3") is not None and store.patient("p3").nhs_number == "9434765919"
    assert store.get_cursor("c") == "2026-01-02T00:00:00Z"


def test_page_state_reports_stored_and_quarantined_versions(store: Store) -> None:
    store.save_pull_page(
        "c",
        [_pulled(store, ("r1", "p1", None, "h1"))],
        [NewQuarantine("referral", "r2", "code", "reason", "field", {"bad": 1})],
        None,
    )
    state = store.pull_page_state("c", ["r1", "r2", "r3"])
    assert state.unchanged("r1", "h1") and not state.unchanged("r1", "h2")
    held = next(iter(state.quarantined))
    assert held[0] == "r2" and state.unchanged(*held)
    assert not state.unchanged("r3", "h1")
