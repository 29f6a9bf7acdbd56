"""The record state without HTTP: clock, versions, keyset paging and trust-side edits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ehr_bridge.errors import ConflictError, RecordValidationError
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.sim.state import MonotonicClock, UnknownReferralError

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


class SteppingClock:
    """A fake clock the test moves by hand, including backwards."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def test_clock_never_goes_backwards_and_always_moves() -> None:
    source = SteppingClock(T0)
    clock = MonotonicClock(source, floor=T0 - timedelta(days=1))
    first = clock.tick()
    second = clock.tick()
    source.moment = T0 - timedelta(hours=5)
    third = clock.tick()
    assert first == T0
    assert first < second < third
    assert third - second == timedelta(milliseconds=1)


def test_changes_are_dated_after_every_generated_record_even_with_an_old_clock() -> None:
    sim = TrustSimulator(referrals=20, clock=SteppingClock(datetime(2020, 1, 1, tzinfo=UTC)))
    records = [entry["referral"] for entry in sim.export()["referrals"]]
    latest = max(datetime.fromisoformat(r["updated_at"]) for r in records)
    changed = sim.state.update_referral("SR0000001", {"presenting_problem": "F320"})
    assert datetime.fromisoformat(changed["updated_at"]) > latest
    assert changed["version"] == 2


def test_update_referral_merges_patient_fields() -> None:
    sim = TrustSimulator(referrals=3)
    before = sim.state.get_referral("SR0000001")
    after = sim.state.update_referral("SR0000001", {"patient": {"phone": "07700 900000"}})
    assert after["patient"]["phone"] == "07700 900000"
    assert after["patient"]["nhs_number"] == before["patient"]["nhs_number"]


def test_add_referral_continues_the_seeded_sequence() -> None:
    sim = TrustSimulator(seed=4, referrals=5)
    existing = len(sim.export()["referrals"])
    first = sim.state.add_referral()
    second = TrustSimulator(seed=4, referrals=5).state.add_referral()
    assert first["patient"] == second["patient"]
    assert first["id"] == f"SR{existing + 1:07d}"
    assert sim.state.get_referral(first["id"])["version"] == 1
    assert first["referred_on_to"] == "IESO01"


def test_paging_serves_a_record_changed_mid_walk_again_later_never_skipping() -> None:
    sim = TrustSimulator(referrals=12, clock=SteppingClock(T0 + timedelta(days=30)))
    state = sim.state
    ours, _ = state.list_referrals(referred_on_to="IESO01", page_size=500)
    first, token = state.list_referrals(referred_on_to="IESO01", page_size=5)
    state.update_referral(first[0]["id"], {"source_of_referral": "A2"})
    rest: list[str] = []
    while token:
        page, token = state.list_referrals(referred_on_to="IESO01", page_size=5, page_token=token)
        rest += [r["id"] for r in page]
    assert rest[-1] == first[0]["id"]
    assert [r["id"] for r in first] + rest[:-1] == [r["id"] for r in ours]


def test_a_token_only_works_for_the_query_it_was_issued_for() -> None:
    state = TrustSimulator(referrals=10).state
    _, token = state.list_referrals(referred_on_to="IESO01", page_size=2)
    with pytest.raises(RecordValidationError) as caught:
        state.list_referrals(referred_on_to="SILVER01", page_size=2, page_token=token)
    assert caught.value.field == "page_token"


def test_unknown_referral_and_duplicate_reference_raise_the_error_tree() -> None:
    state = TrustSimulator(referrals=2).state
    body = {"client_reference": "x", "status": "accepted", "date": "2026-11-02"}
    with pytest.raises(UnknownReferralError):
        state.create_item("SR9999999", "status_event", body)
    created = state.create_item("SR0000001", "status_event", body)
    with pytest.raises(ConflictError) as caught:
        state.create_item("SR0000001", "status_event", body)
    assert caught.value.existing_id == created["id"]
