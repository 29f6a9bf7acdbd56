"""The rest adapter's pagination styles, against the PC-MIS-style simulator and a fake server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from ehr_bridge.adapters.rest import create
from ehr_bridge.adapters.rest.client import RestClient
from ehr_bridge.errors import ConnectionStopError
from ehr_bridge.sim.pcmis import PcmisSimulator

ROOT = Path(__file__).resolve().parents[2]
KEY = "paging-key"
PAGING = "    pagination:\n      style: page_number\n"


def mapping_with(tmp_path: Path, pagination: str) -> Path:
    """pcmis.yaml with its pagination block replaced (the rest of the file is unchanged)."""
    text = (ROOT / "mappings" / "pcmis.yaml").read_text(encoding="utf-8")
    start = text.index("    pagination:\n")
    end = text.index("  writes:\n")
    path = tmp_path / "variant.yaml"
    path.write_text(text[:start] + pagination + text[end:], encoding="utf-8")
    return path


def client(
    tmp_path: Path,
    base_url: str,
    mapping: Path,
    page_size: int = 3,
    session: requests.Session | None = None,
) -> RestClient:
    (tmp_path / "key").write_text(KEY)
    options = {
        "base_url": base_url,
        "mapping": str(mapping),
        "token_file": "key",
        "page_size": page_size,
        "read_attempts": 1,
    }
    return create(options, base_dir=tmp_path, key="trust", provider_code="IESO01", session=session)


def walk(adapter: RestClient, between: Any = None) -> list[str]:
    seen, token = [], None
    for number in range(100):
        page = adapter.fetch_referrals(updated_since=None, page=token)
        seen += [r["ReferralRef"] for r in page.records]
        if between is not None and number == 0:
            between(page.records)
        if not page.next_page:
            return seen
        token = page.next_page
    raise AssertionError("paging never ended")


@pytest.fixture
def sim() -> Iterator[PcmisSimulator]:
    with PcmisSimulator(seed=11, referrals=10, api_key=KEY) as simulator:
        yield simulator


def ours(sim: PcmisSimulator) -> list[str]:
    refs = [e["referral"] for e in sim.export()["referrals"]]
    return sorted(r["ReferralRef"] for r in refs if r["Onward"]["ServiceCode"] == "IESO01")


def touch_first(sim: PcmisSimulator) -> Any:
    def change(records: list[dict[str, Any]]) -> None:
        sim.state.update_referral(records[0]["ReferralRef"], {"Diagnosis": "F41.0"})

    return change


def test_plain_page_numbers_skip_a_record_changed_mid_walk(
    tmp_path: Path, sim: PcmisSimulator
) -> None:
    """The hazard requery_from_last_change exists for, shown on the simulator."""
    variant = mapping_with(tmp_path, PAGING + "      param: pageNumber\n")
    seen = walk(client(tmp_path, sim.api_url, variant), between=touch_first(sim))
    assert len(set(ours(sim)) - set(seen)) == 1


def test_requery_from_last_change_misses_nothing_and_repeats_nothing(
    tmp_path: Path, sim: PcmisSimulator
) -> None:
    seen = walk(client(tmp_path, sim.api_url, ROOT / "mappings" / "pcmis.yaml"), touch_first(sim))
    changed = [r for r in ours(sim) if seen.count(r) > 1]
    assert set(seen) == set(ours(sim))
    assert len(changed) <= 1  # only the record changed mid-walk is served again, at the end


def test_requery_pages_on_when_a_whole_page_shares_one_anchor(tmp_path: Path) -> None:
    """Second-precision anchors and five changes within one second: more than a page."""
    moment = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    with PcmisSimulator(seed=12, referrals=8, api_key=KEY, clock=lambda: moment) as sim:
        for ref in ours(sim)[:5]:
            sim.state.update_referral(ref, {})
        text = (ROOT / "mappings" / "pcmis.yaml").read_text(encoding="utf-8")
        variant = tmp_path / "seconds.yaml"
        variant.write_text(text.replace("%H:%M:%S.%f%z", "%H:%M:%S%z"), encoding="utf-8")
        seen = walk(client(tmp_path, sim.api_url, variant, page_size=2))
        assert sorted(seen) == ours(sim)


def test_link_header_style(tmp_path: Path, sim: PcmisSimulator) -> None:
    variant = mapping_with(tmp_path, "    pagination: {style: link_header}\n")
    assert sorted(walk(client(tmp_path, sim.api_url, variant))) == ours(sim)


def test_a_next_link_to_another_host_is_not_followed(tmp_path: Path, sim: PcmisSimulator) -> None:
    variant = mapping_with(tmp_path, "    pagination: {style: link_header}\n")
    adapter = client(tmp_path, sim.api_url, variant)
    with pytest.raises(ConnectionStopError, match="another host"):
        adapter.fetch_referrals(updated_since=None, page="http://elsewhere.invalid/referrals?p=2")


class FakeSession(requests.Session):
    """Answers from a script of (status, body, headers), recording each request's URL."""

    def __init__(self, answers: list[tuple[int, Any, dict[str, str]]]) -> None:
        super().__init__()
        self.answers = answers
        self.urls: list[str] = []
        self.headers_sent: list[dict[str, str]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        prepared = requests.Request(method, url, params=kwargs.get("params")).prepare()
        self.urls.append(str(prepared.url))
        self.headers_sent.append(dict(kwargs.get("headers") or {}))
        status, body, headers = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        response.headers.update(headers)
        response.url = str(prepared.url)
        return response


def fake_client(tmp_path: Path, pagination: str, session: FakeSession) -> RestClient:
    variant = mapping_with(tmp_path, pagination)
    return client(tmp_path, "https://trust.example/api", variant, session=session)


def test_next_url_style_follows_the_body_link(tmp_path: Path) -> None:
    page = {
        "data": [{"ReferralRef": "A"}],
        "links": {"next": "https://trust.example/api/referrals?c=2"},
    }
    last = {"data": [{"ReferralRef": "B"}], "links": {"next": None}}
    session = FakeSession([(200, page, {}), (200, last, {})])
    adapter = fake_client(
        tmp_path, "    pagination: {style: next_url, next: links.next}\n", session
    )
    assert walk(adapter) == ["A", "B"]
    assert session.urls[1] == "https://trust.example/api/referrals?c=2"
    assert session.headers_sent[0]["X-API-Key"] == KEY


def test_token_style_sends_the_token_back(tmp_path: Path) -> None:
    pagination = "    pagination: {style: token, param: cursor, next: next}\n"
    session = FakeSession(
        [
            (200, {"data": [{"ReferralRef": "A"}], "next": "t-2"}, {}),
            (200, {"data": [], "next": None}, {}),
        ]
    )
    assert walk(fake_client(tmp_path, pagination, session)) == ["A"]
    assert "cursor=t-2" in session.urls[1] and "onwardService=IESO01" in session.urls[1]


def test_page_number_stops_at_total_pages(tmp_path: Path) -> None:
    pagination = PAGING + "      param: pageNumber\n      total_pages: paging.totalPages\n"
    full = [{"ReferralRef": str(n)} for n in range(3)]
    session = FakeSession([(200, {"data": full, "paging": {"totalPages": 1}}, {})])
    assert walk(fake_client(tmp_path, pagination, session)) == ["0", "1", "2"]
    assert len(session.urls) == 1
