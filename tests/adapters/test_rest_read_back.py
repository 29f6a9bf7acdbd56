"""The rest adapter's read-back: endpoints from the mapping, capabilities from what it gives.

``referral`` fetches one referral (quarantine retry), each kind's ``list`` reads its items
back in the payload's shape (reconcile) and ``update`` overwrites one (reconcile --force).
A mapping that gives none of them leaves the connection without those capabilities, and
the support commands say so; the contract suite runs the same calls against the PC-MIS
simulator (tests/contract/).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from typer.testing import CliRunner

from ehr_bridge.adapters.base import WriteItem
from ehr_bridge.adapters.folder import FolderProvider
from ehr_bridge.adapters.registry import SUPPORT_CAPABILITIES, capabilities_of, specs
from ehr_bridge.adapters.rest import create
from ehr_bridge.adapters.rest.client import RestClient
from ehr_bridge.cli.app import app
from ehr_bridge.domain.referral import ProviderRef
from ehr_bridge.errors import ConfigError, TerminalError, TransientError
from ehr_bridge.store import Store
from ehr_bridge.sync.connection import Connection
from ehr_bridge.sync.pull import pull_one
from ehr_bridge.sync.reconcile import require_reader

ROOT = Path(__file__).resolve().parents[2]
PCMIS = ROOT / "mappings" / "pcmis.yaml"
KEY = "read-back-key"
SECRET = "9990001235"
Mutation = Callable[[dict[str, Any]], None]


class RecordingSession(requests.Session):
    """A fake trust answering from a script, keeping what was asked; no network."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[tuple[str, str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append((method, url, kwargs.get("json")))
        status, body = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        return response


def mapping_file(tmp_path: Path, mutate: Mutation | None = None) -> Path:
    raw = yaml.safe_load(PCMIS.read_text("utf-8"))
    if mutate is not None:
        mutate(raw)
    path = tmp_path / "pcmis-changed.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), "utf-8")
    return path


def client(
    tmp_path: Path, mutate: Mutation | None = None, *answers: tuple[int, Any]
) -> tuple[RestClient, RecordingSession]:
    (tmp_path / "key").write_text(KEY)
    session = RecordingSession(*answers)
    options = {
        "base_url": "http://127.0.0.1:9/api",
        "mapping": str(mapping_file(tmp_path, mutate)),
        "token_file": "key",
        "read_attempts": 1,
    }
    adapter = create(
        options, base_dir=tmp_path, key="trust", provider_code="IESO01", session=session
    )
    return adapter, session


def no_referral(raw: dict[str, Any]) -> None:
    del raw["api"]["referral"]


def no_updates(raw: dict[str, Any]) -> None:
    for write in raw["api"]["writes"].values():
        write.pop("update", None)


def no_reads(raw: dict[str, Any]) -> None:
    no_referral(raw)
    no_updates(raw)
    for write in raw["api"]["writes"].values():
        del write["list"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (None, SUPPORT_CAPABILITIES),
        (no_updates, {"read_items", "fetch_referral"}),
        (no_referral, {"read_items", "update_items"}),
        (no_reads, set()),
    ],
)
def test_capabilities_follow_what_the_mapping_declares(
    tmp_path: Path, mutate: Mutation | None, expected: set[str]
) -> None:
    adapter, _ = client(tmp_path, mutate)
    spec = specs()["rest"]
    assert adapter.capabilities == expected
    assert capabilities_of(spec, adapter) == spec.capabilities | expected


def connection(tmp_path: Path, adapter: RestClient) -> Connection:
    return Connection(
        name="pcmis",
        mapping=adapter.mapping,
        source=adapter,
        writer=adapter,
        provider=FolderProvider(tmp_path / "provider"),
        provider_ref=ProviderRef(code="IESO01", display="Provider"),
        capabilities=capabilities_of(specs()["rest"], adapter),
    )


def test_without_read_endpoints_the_support_commands_refuse_with_the_way_out(
    tmp_path: Path,
) -> None:
    adapter, session = client(tmp_path, no_reads)
    conn = connection(tmp_path, adapter)
    with pytest.raises(ConfigError, match="read_items") as info:
        require_reader(conn)
    assert "adapters list" in str(info.value)
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with pytest.raises(ConfigError, match="fetch_referral"):
            pull_one(conn, store, "PCM-000001")
    finally:
        store.close()
    assert session.sent == []  # the trust was never asked


def test_items_are_listed_with_ids_references_and_in_the_payloads_shape(tmp_path: Path) -> None:
    def nested(raw: dict[str, Any]) -> None:
        raw["api"]["writes"]["clinical_note"]["list"] = {
            "path": "/cases/{trust_referral_id}/notes",
            "query": {"service": "{provider_code}"},
            "records": "result.notes",
            "id": "meta.key",
            "reference": "meta.external",
            "fields": "{Body: content.text, NoteDate: content.day}",
            "version": "meta.rev",
        }

    listing = {
        "result": {
            "notes": [
                {
                    "meta": {"key": 41, "external": "ref-1", "rev": 3},
                    "content": {"text": "hello", "day": "10/11/2026"},
                },
                "not an item",
                {"meta": {"key": "N-42"}, "content": {"text": "theirs"}},
            ]
        }
    }
    adapter, session = client(tmp_path, nested, (200, listing))
    first, second = adapter.list_items("PCM/1", "clinical_note")
    assert (first.trust_id, first.client_reference, first.version) == ("41", "ref-1", "3")
    assert first.fields == {"Body": "hello", "NoteDate": "10/11/2026"}
    assert (second.trust_id, second.client_reference, second.version) == ("N-42", None, None)
    ((method, url, _),) = session.sent
    assert method == "GET" and url == "http://127.0.0.1:9/api/cases/PCM%2F1/notes"


def test_the_default_shape_is_the_item_and_the_reference_the_payloads_field(
    tmp_path: Path,
) -> None:
    item = {"NoteId": 7, "ExternalRef": "ref-7", "Body": "x", "AppointmentId": None}
    adapter, _ = client(tmp_path, None, (200, {"data": [item]}))
    (listed,) = adapter.list_items("PCM-1", "clinical_note")
    assert listed.fields == item and listed.client_reference == "ref-7"


@pytest.mark.parametrize(
    ("answer", "error", "code"),
    [
        ({"data": "none"}, TransientError, None),
        ({"data": [{"ExternalRef": "r"}]}, TerminalError, "no_id"),
        ({"data": [{"NoteId": f"<b>{SECRET}</b>"}]}, TerminalError, "trust_id_shape"),
    ],
)
def test_hostile_listings_are_refused_without_repeating_them(
    tmp_path: Path, answer: Any, error: type[Exception], code: str | None
) -> None:
    adapter, _ = client(tmp_path, None, (200, answer))
    with pytest.raises(error) as info:
        adapter.list_items("PCM-1", "clinical_note")
    assert code is None or getattr(info.value, "code", None) == code
    assert SECRET not in str(info.value) and "PCM-1" not in str(info.value)


def test_a_referral_is_fetched_or_none(tmp_path: Path) -> None:
    record = {"ReferralRef": "PCM-1", "Revision": 2}
    missing = {"errors": [{"code": "NOT_FOUND"}]}
    adapter, session = client(tmp_path, None, (200, record), (404, missing))
    assert adapter.fetch_referral("PCM-1") == record
    assert adapter.fetch_referral("PCM-2") is None
    assert [url for _, url, _ in session.sent] == [
        "http://127.0.0.1:9/api/referrals/PCM-1",
        "http://127.0.0.1:9/api/referrals/PCM-2",
    ]


def test_a_referral_answer_that_is_not_the_one_asked_for_is_refused(tmp_path: Path) -> None:
    def searched(raw: dict[str, Any]) -> None:
        raw["api"]["referral"] = {
            "path": "/referrals",
            "query": {"ref": "{trust_referral_id}"},
            "record": "data[0]",
        }

    other = {"data": [{"ReferralRef": "PCM-9"}]}
    adapter, _ = client(tmp_path, searched, (200, {"data": []}), (200, other), (500, {}))
    assert adapter.fetch_referral("PCM-1") is None
    with pytest.raises(TerminalError, match="not the referral asked for"):
        adapter.fetch_referral("PCM-1")
    with pytest.raises(TransientError, match="HTTP 500"):
        adapter.fetch_referral("PCM-1")


def test_update_puts_the_payload_at_the_items_own_path(tmp_path: Path) -> None:
    adapter, session = client(tmp_path, None, (200, {"NoteId": 7, "Body": "ours"}))
    payload = {"ExternalRef": "ref-7", "Body": "ours"}
    receipt = adapter.update(WriteItem("clinical_note", "PCM-1", "ref-7", payload), "7")
    assert receipt.trust_id == "7" and receipt.already_present
    assert session.sent == [("PUT", "http://127.0.0.1:9/api/referrals/PCM-1/notes/7", payload)]


def test_a_kind_without_update_is_not_updatable_and_nothing_is_sent(tmp_path: Path) -> None:
    adapter, session = client(tmp_path)
    item = WriteItem("referral_status", "PCM-1", "ref-s", {"ExternalRef": "ref-s"})
    with pytest.raises(TerminalError) as info:
        adapter.update(item, "3")
    assert info.value.code == "not_updatable" and session.sent == []


def test_adapters_list_says_what_depends_on_the_mapping_and_what_to_do_without_it() -> None:
    outcome = CliRunner().invoke(app, ["adapters", "list", "--json"])
    assert outcome.exit_code == 0
    listed = {a["name"]: a for a in json.loads(outcome.stdout)}
    rest = listed["rest"]
    assert rest["mapping_capabilities"] == sorted(SUPPORT_CAPABILITIES)
    assert not SUPPORT_CAPABILITIES & set(rest["capabilities"])
    assert "where the mapping's api: gives read endpoints" in rest["support"]
    assert listed["iaptus"]["support"] == "reconcile, reconcile --repair --force, quarantine retry"
    for name in ("hl7v2", "fhir"):
        assert "instead of reconcile, confirm at the trust" in listed[name]["support"]
        assert "quarantine dismiss" in listed[name]["support"]
    assert listed["folder"]["support"] == ""
    table = CliRunner().invoke(app, ["adapters", "list"])
    assert table.exit_code == 0 and "if the mapping" in table.stdout
    assert "  hl7v2: instead of reconcile" in table.stdout
