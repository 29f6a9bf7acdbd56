"""The pull applies the connection's NHS number policy: live connections take issued numbers only.

Through the real pull flow, the iaptus mapping and the in-memory fake trust: what is
stored, what is quarantined (code and field), and that neither the quarantine reason
nor the logs carry the number.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.adapters.memory import MemoryTrust
from ehr_bridge.config import load_config
from ehr_bridge.demo import bundled_mapping, prepare_workdir
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.mapping import load_mapping
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.pull import pull

GOLDEN = Path(__file__).resolve().parents[2] / "mappings" / "iaptus.golden"
ISSUED = "4010232137"  # England/Wales/IoM range, valid check digit
TEST_RANGE = "9990001235"  # the reserved 999 test range
CHI = "0101901232"  # Scotland CHI (1 January 1990)
HC = "3200000015"  # Northern Ireland H&C


def _record(n: int, nhs_number: str | None) -> dict[str, Any]:
    record = json.loads((GOLDEN / "referral-01-gp.input.json").read_text("utf-8"))
    record["id"] = f"SR{n:07d}"
    record["patient"]["local_id"] = f"P{n:07d}"
    record["patient"]["nhs_number"] = nhs_number
    return record


def _pull(tmp_path: Path, numbers: list[str | None], **policy: Any) -> Store:
    trust = MemoryTrust([_record(n, number) for n, number in enumerate(numbers)])
    conn = Connection(
        name="trust",
        mapping=load_mapping(bundled_mapping("iaptus.yaml")),
        source=trust,
        writer=trust,
        provider=None,  # type: ignore[arg-type]  # pull never talks to the provider
        provider_ref=ProviderRef(code="IESO01", display="Provider"),
        **policy,
    )
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    pull(conn, store)
    return store


def _quarantined(store: Store) -> dict[str, tuple[str | None, str]]:
    return {q.record_ref: (q.field, q.code) for q in store.quarantine_rows(connection="trust")}


def test_a_live_connection_quarantines_test_range_and_placeholder_numbers(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    numbers = [ISSUED, TEST_RANGE, "0000000000", "9999999999", "5000000005", None]
    store = _pull(tmp_path, numbers)
    assert _quarantined(store) == {
        "SR0000001": ("patient.nhs_number", "nhs_number_test_range"),
        "SR0000002": ("patient.nhs_number", "nhs_number_placeholder"),
        "SR0000003": ("patient.nhs_number", "nhs_number_placeholder"),
        "SR0000004": ("patient.nhs_number", "nhs_number_range"),
    }
    stored = {r.trust_referral_id for r in store.referrals_to_deliver("trust")}
    assert stored == {"SR0000000", "SR0000005"}  # the issued number and the one without
    assert [p.id for p in store.patients_by_nhs_number(ISSUED)]
    assert not store.patients_by_nhs_number(TEST_RANGE)
    shown = " ".join(q.reason for q in store.quarantine_rows(connection="trust")) + caplog.text
    for number in numbers[1:5]:
        assert number not in shown


def test_a_test_connection_accepts_the_test_range_but_never_placeholders(tmp_path):
    store = _pull(tmp_path, [TEST_RANGE, "0000000000", "9999999999"], test_connection=True)
    assert _quarantined(store) == {
        "SR0000001": ("patient.nhs_number", "nhs_number_placeholder"),
        "SR0000002": ("patient.nhs_number", "nhs_number_placeholder"),
    }
    assert store.patients_by_nhs_number(TEST_RANGE)


@pytest.mark.parametrize("test_connection", [False, True])
def test_other_uk_scheme_numbers_are_quarantined_by_default(tmp_path, test_connection):
    store = _pull(tmp_path, [CHI, HC], test_connection=test_connection)
    assert set(_quarantined(store).values()) == {("patient.nhs_number", "nhs_number_other_scheme")}


def test_local_id_policy_stores_the_referral_without_the_number(tmp_path):
    store = _pull(tmp_path, [CHI, HC, CHI], other_uk_numbers="local_id")
    assert _quarantined(store) == {}
    assert not store.patients_by_nhs_number(CHI) and not store.patients_by_nhs_number(HC)
    # the same CHI on two referrals with different local ids: two patients, never merged
    # on a number that is not an NHS number
    patients = {store.resource("Patient", _patient_id(store, ref))["id"] for ref in (0, 2)}
    assert len(patients) == 2
    for ref in range(3):
        patient = store.resource("Patient", _patient_id(store, ref))
        assert patient is not None
        assert [i["value"] for i in patient["identifier"]] == [f"P{ref:07d}"]


def _patient_id(store: Store, n: int) -> str:
    (row,) = [r for r in store.referrals_to_deliver("trust") if r.trust_referral_id == f"SR{n:07d}"]
    return str(row.patient_id)


def test_the_demo_and_simulator_config_is_a_test_connection_and_live_is_the_default(tmp_path):
    config = load_config(prepare_workdir(tmp_path, "http://127.0.0.1:9", "token"))
    (demo,) = config.connection
    assert demo.test_connection is True
    assert demo.other_uk_numbers == "quarantine"
    unmarked = type(demo).model_validate(demo.model_dump(exclude={"test_connection"}))
    assert unmarked.test_connection is False  # a connection is live unless marked
