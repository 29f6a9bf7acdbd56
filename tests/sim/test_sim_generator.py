"""The synthetic caseload: deterministic by seed, realistic, and hostile where asked."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from ehr_bridge.errors import ConfigError
from ehr_bridge.sim import HOSTILE_FIELDS, HOSTILE_KINDS, TrustSimulator
from ehr_bridge.sim.generator import generate

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
SOURCES = {"A1", "A2", "A3", "A4", "B1", "B2", "C1", "C2", "C3", "D1", "D2", "F1", "F2", "F3"}
SOURCES |= {f"E{n}" for n in range(1, 7)} | {f"M{n}" for n in range(1, 6)}
SOURCES |= {"G1", "G2", "G3", "G4", "H1", "H2", "I1", "I2"}


def mod11_ok(number: object) -> bool:
    """Independent Modulus 11 check (the test must not trust the generator's own)."""
    if not isinstance(number, str) or not re.fullmatch(r"\d{10}", number):
        return False
    total = sum(int(number[i]) * (10 - i) for i in range(9))
    check = (11 - total % 11) % 11
    return check != 10 and check == int(number[9])


def iso_date(value: object) -> date | None:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def broken_fields(record: dict[str, Any]) -> set[str]:
    """Every field path in ``record`` that breaks the trust data rules."""
    broken = set()
    if not isinstance(record.get("id"), str):
        broken.add("id")
    if iso_date(record.get("received_date")) is None:
        broken.add("received_date")
    if record.get("source_of_referral") not in SOURCES:
        broken.add("source_of_referral")
    patient = record.get("patient")
    if not isinstance(patient, dict):
        return broken | {"patient"}
    if not isinstance(patient.get("local_id"), str):
        broken.add("patient.local_id")
    if not mod11_ok(patient.get("nhs_number")):
        broken.add("patient.nhs_number")
    born = iso_date(patient.get("birth_date"))
    if born is None or born > NOW.date():
        broken.add("patient.birth_date")
    if patient.get("gender") not in {"1", "2", "9", "X"}:
        broken.add("patient.gender")
    return broken


def dump(sim: TrustSimulator) -> bytes:
    return json.dumps(sim.export(), ensure_ascii=False).encode()


def test_same_seed_gives_byte_identical_export() -> None:
    first = TrustSimulator(seed=7, referrals=30, hostile=13)
    second = TrustSimulator(seed=7, referrals=30, hostile=13)
    assert dump(first) == dump(second)
    assert dump(first) != dump(TrustSimulator(seed=8, referrals=30, hostile=13))


def test_good_referrals_follow_the_data_rules() -> None:
    referrals = generate(seed=3, referrals=200, now=NOW).referrals
    assert all(broken_fields(record) == set() for record in referrals)


def test_nhs_numbers_are_999_range_and_unique_per_patient() -> None:
    patients = [r["patient"] for r in generate(seed=5, referrals=300, now=NOW).referrals]
    numbers = [p["nhs_number"] for p in patients]
    assert all(n.startswith("999") and mod11_ok(n) for n in numbers)
    assert len(set(numbers)) == len(numbers)
    assert len({p["local_id"] for p in patients}) == len(patients)


def test_ids_contacts_and_dates_look_real() -> None:
    referrals = generate(seed=2, referrals=100, now=NOW).referrals
    for record in referrals:
        patient = record["patient"]
        assert re.fullmatch(r"SR\d{7}", record["id"])
        assert re.fullmatch(r"P\d{7}", patient["local_id"])
        assert re.fullmatch(r"07700 900\d{3}", patient["phone"])
        assert patient["email"] is None or patient["email"].endswith("@example.invalid")
        assert re.fullmatch(r"[A-Z]{1,2}\d{1,2} \d[A-Z]{2}", patient["postcode"])
        assert date(1950, 1, 1) <= date.fromisoformat(patient["birth_date"]) <= date(2006, 12, 31)
        received = date.fromisoformat(record["received_date"])
        assert NOW.date() - timedelta(days=120) < received <= NOW.date()
        assert received <= date.fromisoformat(record["referred_on_date"]) <= NOW.date()
        assert datetime.fromisoformat(record["updated_at"]) < NOW
        assert record["status"] == "referred_on"
        assert re.fullmatch(r"F(32\d|41[012]|40\d|431)", record["presenting_problem"])
    assert len({r["id"] for r in referrals}) == len(referrals)


def test_sources_are_mostly_gp_and_self_referral_with_some_others() -> None:
    referrals = generate(seed=4, referrals=300, now=NOW).referrals
    counts = Counter(r["source_of_referral"] for r in referrals)
    assert counts["A1"] + counts["B1"] > 0.7 * len(referrals)
    assert len(counts) > 3
    statuses = Counter(r["patient"]["nhs_number_status"] for r in referrals)
    assert statuses["01"] > 0.8 * len(referrals)


def test_about_one_in_five_extra_referrals_go_elsewhere() -> None:
    referrals = generate(seed=1, referrals=50, provider_code="IESO01", now=NOW).referrals
    targets = Counter(r["referred_on_to"] for r in referrals)
    assert targets["IESO01"] == 50
    assert sum(targets.values()) - 50 == 10
    assert "SILVER01" in targets


def test_hostile_records_break_exactly_the_field_they_claim() -> None:
    dataset = generate(seed=9, referrals=10, hostile=2 * len(HOSTILE_KINDS), now=NOW)
    by_key = dict(zip(dataset.keys, dataset.referrals, strict=True))
    assert Counter(info.kind for info in dataset.hostile) == dict.fromkeys(HOSTILE_KINDS, 2)
    for info in dataset.hostile:
        assert info.field == HOSTILE_FIELDS[info.kind]
        assert broken_fields(by_key[info.key]) == {info.field}, info.kind
        assert by_key[info.key]["referred_on_to"] == "IESO01"


def test_hostile_kinds_cover_the_required_breakages() -> None:
    fields = set(HOSTILE_FIELDS.values())
    assert {"patient.nhs_number", "received_date", "source_of_referral", "patient", "id"} <= fields
    assert {"patient.local_id", "patient.birth_date", "patient.gender"} <= fields
    assert len(HOSTILE_KINDS) >= 12


def test_hostile_values_include_wrong_json_types() -> None:
    dataset = generate(seed=1, referrals=0, hostile=len(HOSTILE_KINDS), now=NOW)
    by_kind = {info.kind: dataset.referrals[i] for i, info in enumerate(dataset.hostile)}
    assert isinstance(by_kind["received_date_wrong_type"]["received_date"], int)
    assert isinstance(by_kind["patient_wrong_type"]["patient"], str)
    assert "id" not in by_kind["id_missing"]


def test_state_exposes_hostile_ids_and_an_unkeyed_marker() -> None:
    sim = TrustSimulator(referrals=5, hostile=len(HOSTILE_KINDS))
    assert len(sim.state.hostile_fields) == len(HOSTILE_KINDS) - 1
    [unkeyed] = sim.state.hostile_unkeyed
    assert unkeyed.field == "id" and unkeyed.referral_id is None
    assert unkeyed.key in sim.state.hostile


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"now": datetime(2026, 11, 1)}, "now"),
        ({"referrals": -1}, "referrals"),
        ({"hostile": -2}, "hostile"),
        ({"token": ""}, "token"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TrustSimulator(**options)
    assert caught.value.key == key
