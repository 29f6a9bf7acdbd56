"""A trust whose paging runs in a circle, never ends, or repeats one record cannot trap a pull.

Each trust here is a real HTTP server on loopback answering the IAPTUS-style listing with
records from the simulator: next-page tokens that cycle (a -> b -> a), fresh tokens for
ever, and one page holding thousands of copies of one referral. The pull stops the run
with an error naming the problem (pages before it stay committed), and a flood of one id
is one version with a note for support staff.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from ehr_bridge.config import load_config
from ehr_bridge.errors import TerminalError
from ehr_bridge.sim import TrustSimulator
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection, build_connections
from ehr_bridge.sync.cycle import run_cycle
from ehr_bridge.sync.pull import pull
from support.databases import BACKENDS, database_url

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
[database]
url = "sqlite:///state/ehr-bridge.db"

[[connection]]
name = "paging-trust"
mapping = "{mapping}"
test_connection = true

[connection.provider_org]
code = "IESO01"

[connection.schedule]
max_pull_pages = {max_pages}

[connection.trust]
adapter = "iaptus"
base_url = "{url}/api/v1"
token_file = "token"
read_attempts = 1

[connection.provider]
adapter = "folder"
path = "provider"
"""
Answer = Callable[[str | None], dict[str, Any] | bytes]


def _records(count: int = 4) -> list[dict[str, Any]]:
    exported = TrustSimulator(seed=7, referrals=3 * count).export()["referrals"]
    ours = [e["referral"] for e in exported if e["referral"]["referred_on_to"] == "IESO01"]
    return ours[:count]


@contextmanager
def _trust(answer: Answer) -> Iterator[str]:
    """A loopback trust whose referral listing is ``answer(page_token)``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            token = parse_qs(urlparse(self.path).query).get("page_token", [None])[0]
            answered = answer(token)
            body = answered if isinstance(answered, bytes) else json.dumps(answered).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _connection(tmp_path: Path, url: str, *, max_pages: int = 50) -> tuple[Connection, Store]:
    (tmp_path / "token").write_text("t")
    (tmp_path / "ehr-bridge.toml").write_text(
        CONFIG.format(mapping=ROOT / "mappings" / "iaptus.yaml", url=url, max_pages=max_pages)
    )
    config = load_config(tmp_path / "ehr-bridge.toml")
    (conn,) = build_connections(config)
    return conn, Store(config.database_url())


def test_next_page_links_that_cycle_stop_the_run_naming_the_cycle(tmp_path: Path) -> None:
    first, second = _records(4)[:2], _records(4)[2:]
    pages = {None: (first, "a"), "a": (second, "b"), "b": ([], "a")}  # a -> b -> a -> ...

    def answer(token: str | None) -> dict[str, Any]:
        items, following = pages[token]
        return {"items": items, "next_page_token": following}

    with _trust(answer) as url:
        conn, store = _connection(tmp_path, url)
        try:
            with pytest.raises(TerminalError) as caught:
                pull(conn, store)
            assert caught.value.code == "page_cycle"
            # the pages before the cycle are committed: nothing is lost
            assert len(store.list_referrals(conn.name)) == 4
            report = run_cycle(conn, store, flows=("pull",))
            assert "circle" in report["pull"]["error"]
        finally:
            store.close()


def test_endless_fresh_page_tokens_stop_at_the_page_limit(tmp_path: Path) -> None:
    records = _records(1)

    def answer(token: str | None) -> dict[str, Any]:
        return {"items": records, "next_page_token": f"t{int((token or 't0')[1:]) + 1}"}

    with _trust(answer) as url:
        conn, store = _connection(tmp_path, url, max_pages=25)
        try:
            with pytest.raises(TerminalError) as caught:
                pull(conn, store)
            assert caught.value.code == "page_limit"
            assert "max_pull_pages" in str(caught.value)
            (row,) = store.list_referrals(conn.name)
            assert len(store.referral_versions(row.id)) == 1
        finally:
            store.close()


def test_a_page_of_thousands_of_copies_of_one_referral_is_one_version_and_a_note(
    tmp_path: Path,
) -> None:
    (record,) = _records(1)
    copies = [
        {**record, "version": n, "updated_at": record["updated_at"], "status": "received"}
        for n in range(1, 3001)
    ]

    def answer(_token: str | None) -> dict[str, Any]:
        return {"items": copies, "next_page_token": None}

    with _trust(answer) as url:
        conn, store = _connection(tmp_path, url)
        try:
            counts = pull(conn, store)
            assert (counts.stored, counts.collapsed) == (1, 2999)
            (row,) = store.list_referrals(conn.name)
            assert row.source_version == "3000"  # the page's last copy
            assert len(store.referral_versions(row.id)) == 1
            (note,) = store.quarantine_rows(connection=conn.name)
            assert (note.code, note.record_ref) == ("duplicate_in_page", record["id"])
            assert record["patient"]["family_name"] not in note.payload
        finally:
            store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_nul_in_one_records_id_or_local_id_quarantines_that_record_only(
    backend: str, tmp_path: Path
) -> None:
    """PostgreSQL refuses NUL in text: the record is set aside naming the field, not the page."""
    good, bad_id, bad_local = _records(3)
    bad_id = {**bad_id, "id": f"{bad_id['id']}\x00X"}
    bad_local = {**bad_local, "patient": {**bad_local["patient"], "local_id": "RXX\x000042"}}

    def answer(_token: str | None) -> dict[str, Any]:
        return {"items": [bad_id, good, bad_local], "next_page_token": None}

    with _trust(answer) as url:
        conn, store = _connection(tmp_path, url)
        store.close()
        store = Store(database_url(backend, tmp_path))
        try:
            counts = pull(conn, store)
            assert (counts.stored, counts.quarantined) == (1, 2)
            assert [r.trust_referral_id for r in store.list_referrals(conn.name)] == [good["id"]]
            entries = store.quarantine_rows(connection=conn.name)
            assert sorted((e.field, e.code) for e in entries) == [
                ("id", "control_characters"),
                ("patient.local_id", "control_characters"),
            ]
            assert all("\x00" not in e.record_ref for e in entries)
        finally:
            store.close()


def test_bytes_that_are_not_utf8_in_one_name_quarantine_that_referral_only(
    tmp_path: Path,
) -> None:
    """Never stored with U+FFFD in place of the letters: the name would be wrong for good."""
    records = _records(3)
    records[1] = {**records[1], "patient": {**records[1]["patient"], "family_name": "SIAN-MARKER"}}
    body = json.dumps({"items": records, "next_page_token": None}, ensure_ascii=False).encode()
    body = body.replace(b"SIAN-MARKER", b"SI\xc2N")  # a Latin-1 byte inside UTF-8 JSON

    with _trust(lambda _token: body) as url:
        conn, store = _connection(tmp_path, url)
        try:
            counts = pull(conn, store)
            assert (counts.stored, counts.quarantined) == (2, 1)
            (entry,) = store.quarantine_rows(connection=conn.name)
            assert (entry.field, entry.record_ref) == ("patient.family_name", records[1]["id"])
            stored = {r.trust_referral_id for r in store.list_referrals(conn.name)}
            assert stored == {records[0]["id"], records[2]["id"]}
        finally:
            store.close()
