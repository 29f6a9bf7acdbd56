"""GET /referrals over HTTP: provider filter, keyset paging, closed-start updated_since."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from sim_client import Api, running

from ehr_bridge.sim import HOSTILE_KINDS


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with running(seed=11, referrals=40, hostile=len(HOSTILE_KINDS)) as client:
        yield client


def order_key(record: dict[str, object]) -> tuple[datetime, str]:
    return datetime.fromisoformat(str(record["updated_at"])), str(record.get("id", ""))


def test_listing_serves_only_our_referrals_including_hostile_ones(api: Api) -> None:
    items = api.walk(referred_on_to="IESO01")
    assert len(items) == 40 + len(HOSTILE_KINDS)
    assert all(item["referred_on_to"] == "IESO01" for item in items)
    assert sum("id" not in item for item in items) == 1
    everything = api.walk()
    assert {item["referred_on_to"] for item in everything} > {"IESO01"}
    assert len(everything) == len(api.sim.export()["referrals"])


@pytest.mark.parametrize("page_size", [1, 7, 500])
def test_pages_walk_everything_once_in_updated_at_order(api: Api, page_size: int) -> None:
    items = api.walk(referred_on_to="IESO01", page_size=page_size)
    keys = [order_key(item) for item in items]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys) == 40 + len(HOSTILE_KINDS)


def test_last_page_has_no_token_and_default_size_is_100(api: Api) -> None:
    page = api.get("/referrals", referred_on_to="IESO01").json()
    assert page["next_page_token"] is None
    assert len(page["items"]) == 40 + len(HOSTILE_KINDS)


def test_updated_since_is_a_closed_start(api: Api) -> None:
    items = api.walk(referred_on_to="IESO01")
    pivot = items[len(items) // 2]
    since = api.walk(referred_on_to="IESO01", updated_since=pivot["updated_at"])
    assert since[0] == pivot
    assert since == items[len(items) // 2 :]


def test_unknown_provider_lists_nothing(api: Api) -> None:
    page = api.get("/referrals", referred_on_to="NOBODY")
    assert page.json() == {"items": [], "next_page_token": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 501}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"updated_since": "yesterday"}, "updated_since"),
        ({"updated_since": "2026-11-01T00:00:00"}, "updated_since"),
        ({"page_token": "not-a-token"}, "page_token"),
    ],
)
def test_bad_query_parameters_answer_422_naming_them(
    api: Api, params: dict[str, object], field: str
) -> None:
    answer = api.get("/referrals", referred_on_to="IESO01", **params)
    assert answer.status_code == 422
    assert answer.json()["field"] == field
    assert answer.json()["error"] == "validation"


def test_a_token_replayed_with_other_filters_is_refused(api: Api) -> None:
    token = api.get("/referrals", referred_on_to="IESO01", page_size=2).json()["next_page_token"]
    answer = api.get("/referrals", referred_on_to="SILVER01", page_size=2, page_token=token)
    assert answer.status_code == 422
    assert answer.json()["field"] == "page_token"


def test_get_one_referral_and_404_for_unknown(api: Api) -> None:
    listed = api.get("/referrals", referred_on_to="IESO01", page_size=1).json()["items"][0]
    assert api.get(f"/referrals/{listed['id']}").json() == listed
    missing = api.get("/referrals/SR9999999")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "not_found",
        "message": "no referral with this id",
        "field": None,
    }


def test_hostile_referrals_with_ids_can_be_fetched(api: Api) -> None:
    for referral_id, field in api.sim.state.hostile_fields.items():
        answer = api.get(f"/referrals/{referral_id}")
        assert answer.status_code == 200, field
