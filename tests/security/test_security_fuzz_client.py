"""Fuzz the simulator-facing client: any answer is a page, a receipt or one of our errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import responses
from hypothesis import given
from hypothesis import strategies as st
from security_fuzz_budget import FUZZ, JSON

from ehr_bridge.adapters.base import SourcePage, WriteItem, WriteReceipt
from ehr_bridge.adapters.iaptus.client import IaptusClient, create
from ehr_bridge.demo import bundled_mapping
from ehr_bridge.domain.referral import ProviderRef, build_referral_resources
from ehr_bridge.errors import EhrBridgeError, RecordError
from ehr_bridge.mapping import load_mapping

API = "https://trust.example/api/v1"
MAPPING = load_mapping(bundled_mapping("iaptus.yaml"))
ITEM = WriteItem("clinical_note", "R1", "ref-1", {"text": "note", "date": "2026-01-01"})
STATUSES = st.sampled_from([200, 201, 204, 302, 400, 401, 403, 404, 409, 422, 429, 500, 503])


@st.composite
def answers(draw: st.DrawFn) -> tuple[int, dict[str, str], bytes]:
    """A status, headers and a body: JSON shaped like a listing, any JSON, or any bytes."""
    status = draw(STATUSES | st.integers(200, 599))
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["Retry-After"] = draw(st.sampled_from(["0", "-5", "nan", "inf", "1e309", "soon"]))
    shape = draw(st.sampled_from(["listing", "json", "bytes", "deep"]))
    if shape == "listing":
        doc = {
            "items": draw(st.lists(JSON, max_size=5)),
            "next_page_token": draw(JSON),
            "existing_id": draw(JSON),
            "error": draw(JSON),
            "field": draw(JSON),
        }
        body = json.dumps(doc).encode()
    elif shape == "json":
        body = json.dumps(draw(JSON)).encode()
    elif shape == "deep":
        body = b"[" * draw(st.integers(60, 5000))
    else:
        body = draw(st.binary(max_size=200))
    if draw(st.integers(0, 4)) == 0:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return status, headers, body


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> IaptusClient:
    import os

    os.environ["FUZZ_TOKEN"] = "t"
    options = {"base_url": API, "token_env": "FUZZ_TOKEN", "read_attempts": 1}
    base = tmp_path_factory.mktemp("client")
    return create(options, base_dir=Path(base), key="trust", provider_code="IESO01")


def _serve(mock: responses.RequestsMock, method: str, url: str, answer: Any) -> None:
    status, headers, body = answer
    mock.add(method, url, status=status, headers=headers, body=body)


def _mapped_or_refused(record: Any) -> None:
    if not isinstance(record, dict):
        return
    try:
        facts = MAPPING.referral_facts(record)
        build_referral_resources("fuzz", ProviderRef("IESO01", "P"), facts, allow_test_range=True)
    except RecordError as exc:
        assert exc.safe_message


@FUZZ
@given(answer=answers(), page=st.none() | st.text(max_size=8))
def test_fuzz_a_listing_answer_is_a_page_or_our_error(
    client: IaptusClient, answer: Any, page: str | None
) -> None:
    with responses.RequestsMock() as mock:
        _serve(mock, responses.GET, f"{API}/referrals", answer)
        try:
            result = client.fetch_referrals(updated_since=None, page=page)
        except EhrBridgeError as exc:
            assert exc.safe_message and exc.code
            return
    assert isinstance(result, SourcePage) and isinstance(result.records, list)
    assert result.next_page is None or isinstance(result.next_page, str)
    for record in result.records:
        _mapped_or_refused(record)


@FUZZ
@given(answer=answers(), lookup=answers())
def test_fuzz_a_write_answer_is_a_receipt_or_our_error(
    client: IaptusClient, answer: Any, lookup: Any
) -> None:
    url = f"{API}/referrals/R1/clinical-notes"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        _serve(mock, responses.POST, url, answer)
        _serve(mock, responses.GET, url, lookup)
        for call in (lambda: client.write(ITEM), lambda: client.find(ITEM)):
            try:
                receipt = call()
            except EhrBridgeError as exc:
                assert exc.safe_message and exc.code
                continue
            assert receipt is None or isinstance(receipt, WriteReceipt)
