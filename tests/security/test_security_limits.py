"""Input limits: body size, compression bombs and JSON nesting, on every network adapter."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import Any

import pytest
import responses

from ehr_bridge.adapters.base import WriteItem
from ehr_bridge.adapters.iaptus.client import create
from ehr_bridge.errors import TerminalError, TransientError
from ehr_bridge.security import InputLimitError, InputLimits, json_depth, loads_limited
from ehr_bridge.security.limits import read_limited

API = "https://trust.example/api/v1"
SMALL = InputLimits(max_body_bytes=64 * 1024, max_json_depth=16)


@pytest.mark.parametrize(
    ("data", "depth"),
    [
        (b'"[[[["', 0),
        (b"42", 0),
        (b'{"a": [{"b": 1}]}', 3),
        (b'{"a": "[[[[{{{{", "b": ["\\"[[["]}', 2),
        (b"[" * 50, 50),
        (b"[[]][[[]]]", 3),
    ],
)
def test_json_depth_counts_containers_not_brackets_in_strings(data: bytes, depth: int) -> None:
    assert json_depth(data) == depth


def test_loads_limited_refuses_deep_json_nan_and_oversize_text() -> None:
    assert loads_limited('{"a": [1, 2]}', SMALL, "test") == {"a": [1, 2]}
    with pytest.raises(InputLimitError, match="deeper than 16"):
        loads_limited("[" * 17 + "]" * 17, SMALL, "test")
    with pytest.raises(InputLimitError, match="deeper"):
        loads_limited("[" * 60_000, SMALL, "test")  # would blow the parser's stack
    with pytest.raises(ValueError, match="constant"):
        loads_limited('{"a": NaN}', SMALL, "test")
    with pytest.raises(InputLimitError, match="larger"):
        loads_limited(" " * (SMALL.max_body_bytes + 1), SMALL, "test")


class _Raw:
    """urllib3's response as the limit reader sees it; counts what was read."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)
        self.read_bytes = 0

    def read(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        chunk = self.data.read(amt)
        self.read_bytes += len(chunk)
        return chunk


def test_a_body_is_read_only_up_to_the_limit_without_a_content_length() -> None:
    raw = _Raw(b"x" * (10 * SMALL.max_body_bytes))
    with pytest.raises(InputLimitError, match="larger than 65536"):
        read_limited(raw, {}, SMALL, "GET answer")
    assert raw.read_bytes <= SMALL.max_body_bytes + 64 * 1024


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    raw = _Raw(b"{}")
    with pytest.raises(InputLimitError):
        read_limited(raw, {"Content-Length": str(SMALL.max_body_bytes + 1)}, SMALL, "GET")
    assert raw.read_bytes == 0


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_bodies_inflate_with_a_bound(encoding: str) -> None:
    def pack(data: bytes) -> bytes:
        if encoding == "gzip":
            return gzip.compress(data)
        if encoding == "deflate":
            return zlib.compress(data)
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return packer.compress(data) + packer.flush()

    header = {"Content-Encoding": "deflate" if encoding == "raw-deflate" else encoding}
    assert read_limited(_Raw(pack(b'{"ok": true}')), header, SMALL, "GET") == b'{"ok": true}'
    bomb = pack(b"\0" * (200 * SMALL.max_body_bytes))  # 13 MB of zeros in a few kB
    assert len(bomb) < SMALL.max_body_bytes
    with pytest.raises(InputLimitError, match="inflates past"):
        read_limited(_Raw(bomb), header, SMALL, "GET")


@pytest.mark.parametrize(("encoding", "body"), [("br", b"x"), ("gzip", b"not gzip")])
def test_unknown_or_broken_encodings_are_refused(encoding: str, body: bytes) -> None:
    with pytest.raises(InputLimitError):
        read_limited(_Raw(body), {"Content-Encoding": encoding}, SMALL, "GET")


def _client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("LIMIT_TOKEN", "t")
    options = {
        "base_url": API,
        "token_env": "LIMIT_TOKEN",
        "read_attempts": 1,
        "limits": {"max_body_bytes": SMALL.max_body_bytes, "max_json_depth": 16},
    }
    return create(options, base_dir=tmp_path, key="trust", provider_code="IESO01")


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (b'{"items": [' + b'"x",' * 40_000 + b'"x"]}', {}, "larger than"),
        (gzip.compress(b" " * 5_000_000), {"Content-Encoding": "gzip"}, "inflates past"),
        (b'{"items": [' + b"[" * 5000 + b"]" * 5000 + b"]}", {}, "nested deeper"),
    ],
)
def test_the_adapter_refuses_a_hostile_page_naming_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: bytes, headers: dict, reason: str
) -> None:
    client = _client(tmp_path, monkeypatch)
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{API}/referrals", body=body, headers=headers)
        with pytest.raises(InputLimitError, match=reason) as caught:
            client.fetch_referrals(updated_since=None, page=None)
    assert caught.value.code == "input_limit" and "x" not in str(caught.value).split(":")[-1]


def test_an_oversize_answer_to_a_write_is_ambiguous_so_the_next_try_reads_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(tmp_path, monkeypatch)
    item = WriteItem(
        kind="clinical_note", trust_referral_id="R1", client_reference="c1", payload={"text": "x"}
    )
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, f"{API}/referrals/R1/clinical-notes", body=b"{" * 20_000)
        with pytest.raises(TransientError) as caught:
            client.write(item)
    assert caught.value.ambiguous


def test_a_listing_that_names_itself_as_next_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(tmp_path, monkeypatch)
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{API}/referrals", json={"items": [], "next_page_token": "p2"})
        with pytest.raises(TerminalError, match="same page"):
            client.fetch_referrals(updated_since=None, page="p2")
