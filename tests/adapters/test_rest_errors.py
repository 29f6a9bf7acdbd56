"""The rest adapter's start-up checks and its error translation at the HTTP boundary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ehr_bridge.adapters.base import WriteItem
from ehr_bridge.adapters.rest import create
from ehr_bridge.adapters.rest.client import RestClient
from ehr_bridge.errors import (
    ConfigError,
    ConflictError,
    ConnectionStopError,
    TerminalError,
    TransientError,
)
from ehr_bridge.sim.pcmis import PcmisSimulator

ROOT = Path(__file__).resolve().parents[2]
PCMIS = ROOT / "mappings" / "pcmis.yaml"
KEY = "errors-key"
SECRET = "9990001235"


def options(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    (tmp_path / "key").write_text(KEY)
    found = {"base_url": "http://127.0.0.1:9/api", "mapping": str(PCMIS), "token_file": "key"}
    return {**found, "read_attempts": 1, **changes}


def build(tmp_path: Path, **changes: Any) -> RestClient:
    return create(
        options(tmp_path, **changes), base_dir=tmp_path, key="trust", provider_code="IESO01"
    )


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"base_url": "ftp://x"}, "trust.base_url"),
        ({"colour": "red"}, "trust.colour"),
        ({"page_size": 0}, "trust.page_size"),
        ({"mapping": None}, "trust.mapping"),
        ({"mapping": "missing.yaml"}, "trust.mapping"),
        ({"mapping": str(ROOT / "mappings" / "iaptus.yaml")}, "trust.mapping"),
        ({"token_file": None}, "trust.token_env"),
        ({"token": "inline"}, "trust.token"),
    ],
)
def test_options_are_checked_at_start_up(tmp_path: Path, changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        create(
            {k: v for k, v in options(tmp_path, **changes).items() if v is not None},
            base_dir=tmp_path,
            key="trust",
            provider_code="X",
        )
    assert info.value.key == key


def test_a_mapping_without_every_write_is_refused(tmp_path: Path) -> None:
    text = PCMIS.read_text(encoding="utf-8")
    start = text.index("    referral_status:\n      create:")
    partial = tmp_path / "partial.yaml"
    partial.write_text(text[:start], encoding="utf-8")
    with pytest.raises(ConfigError, match="referral_status") as info:
        build(tmp_path, mapping=str(partial))
    assert info.value.key == "trust.mapping"


def test_repr_masks_the_key(tmp_path: Path) -> None:
    assert KEY not in repr(build(tmp_path))


@pytest.fixture
def sim() -> Iterator[PcmisSimulator]:
    with PcmisSimulator(seed=13, referrals=3, api_key=KEY) as simulator:
        yield simulator


def item(sim: PcmisSimulator, reference: str, **payload: Any) -> WriteItem:
    ref = sim.export()["referrals"][0]["referral"]["ReferralRef"]
    body = {"ExternalRef": reference, "Status": "ACC", "EffectiveDate": "03/11/2026", **payload}
    return WriteItem("referral_status", ref, reference, body)


def test_wrong_key_stops_the_connection(tmp_path: Path, sim: PcmisSimulator) -> None:
    (tmp_path / "old-key").write_text("not-the-key")
    adapter = build(tmp_path, base_url=sim.api_url, token_file="old-key")
    with pytest.raises(ConnectionStopError, match="HTTP 401") as info:
        adapter.fetch_referrals(updated_since=None, page=None)
    assert info.value.code == "auth_refused"
    assert str(info.value).endswith(
        "the server refused our credentials (HTTP 401);"
        " check the token in the file old-key (trust.token_file)"
    )
    assert "not-the-key" not in str(info.value)


def test_a_refused_token_from_the_environment_names_the_variable(
    tmp_path: Path, sim: PcmisSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PCMIS_KEY", "not-the-key")
    adapter = build(tmp_path, base_url=sim.api_url, token_file=None, token_env="PCMIS_KEY")
    with pytest.raises(ConnectionStopError) as info:
        adapter.fetch_referrals(updated_since=None, page=None)
    assert "check the token in the environment variable PCMIS_KEY (trust.token_env)" in str(
        info.value
    )


def test_busy_trust_is_transient_with_retry_after(tmp_path: Path, sim: PcmisSimulator) -> None:
    adapter = build(tmp_path, base_url=sim.api_url)
    sim.fail_next(503, count=1, retry_after=7)
    with pytest.raises(TransientError) as info:
        adapter.write(item(sim, "busy"))
    assert info.value.retry_after == 7 and info.value.ambiguous
    sim.fail_next(429, count=1)
    with pytest.raises(TransientError) as info:
        adapter.fetch_referrals(updated_since=None, page=None)
    assert not info.value.ambiguous


def test_reads_are_retried_within_the_call(tmp_path: Path, sim: PcmisSimulator) -> None:
    adapter = build(tmp_path, base_url=sim.api_url, read_attempts=2)
    sim.fail_next(503, count=1, retry_after=0)
    assert adapter.fetch_referrals(updated_since=None, page=None).records


def test_validation_failure_is_terminal_and_names_the_field(
    tmp_path: Path, sim: PcmisSimulator
) -> None:
    adapter = build(tmp_path, base_url=sim.api_url)
    with pytest.raises(TerminalError) as info:
        adapter.write(item(sim, "bad", EffectiveDate=SECRET))
    assert info.value.code == "http_422"
    assert "VALIDATION (field EffectiveDate)" in str(info.value)
    assert "{trust_referral_id}" in str(info.value) and SECRET not in str(info.value)


def test_conflict_answers_the_existing_id(tmp_path: Path, sim: PcmisSimulator) -> None:
    adapter = build(tmp_path, base_url=sim.api_url)
    first = adapter.write(item(sim, "twice"))
    second = adapter.write(item(sim, "twice"))
    assert second.trust_id == first.trust_id and second.already_present
    found = adapter.find(item(sim, "twice"))
    assert found is not None and found.trust_id == first.trust_id
    assert adapter.find(item(sim, "never")) is None


def test_unreachable_trust_is_transient(tmp_path: Path) -> None:
    adapter = build(tmp_path, base_url="http://127.0.0.1:9/api", timeout_seconds=1)
    with pytest.raises(TransientError, match="ConnectionError") as info:
        adapter.fetch_referrals(updated_since=None, page=None)
    assert info.value.code == "unreachable"
    assert str(info.value).endswith(
        "the connection to 127.0.0.1:9 failed; check the network and the address in trust.base_url"
    )


class ScriptedSession(requests.Session):
    """A fake trust answering from a script; no network."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        super().__init__()
        self.answers = list(answers)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        status, body = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return response


def scripted(tmp_path: Path, *answers: tuple[int, Any]) -> RestClient:
    return create(
        options(tmp_path),
        base_dir=tmp_path,
        key="trust",
        provider_code="X",
        session=ScriptedSession(*answers),
    )


def test_error_codes_that_carry_values_are_not_repeated(tmp_path: Path) -> None:
    body = {"errors": [{"code": f"bad NHS number {SECRET}", "field": f"Client {SECRET}!"}]}
    adapter = scripted(tmp_path, (400, body))
    with pytest.raises(TerminalError) as info:
        adapter.write(WriteItem("care_contact", "PCM-1", "r1", {"ExternalRef": "r1"}))
    assert SECRET not in str(info.value) and "HTTP 400" in str(info.value)


def test_conflict_without_an_id_falls_back_to_find(tmp_path: Path) -> None:
    conflict = (409, {"errors": [{"code": "DUPLICATE"}]})
    listing = (
        200,
        {"data": [{"ExternalRef": "r1", "NoteId": 5}, {"ExternalRef": "r2", "NoteId": 6}]},
    )
    adapter = scripted(tmp_path, conflict, listing)
    receipt = adapter.write(WriteItem("clinical_note", "PCM-1", "r2", {"ExternalRef": "r2"}))
    assert receipt.trust_id == "6" and receipt.already_present
    with pytest.raises(ConflictError):
        scripted(tmp_path, conflict, (200, {"data": []})).write(
            WriteItem("clinical_note", "PCM-1", "r3", {"ExternalRef": "r3"})
        )


def test_answers_without_the_expected_shape(tmp_path: Path) -> None:
    with pytest.raises(TransientError, match="no list of records"):
        scripted(tmp_path, (200, b"<html>")).fetch_referrals(updated_since=None, page=None)
    with pytest.raises(TerminalError, match="no id"):
        scripted(tmp_path, (201, {"Id": 1})).write(
            WriteItem("assessment", "PCM-1", "r1", {"ExternalRef": "r1"})
        )


def test_risk_alerts_are_optional_but_never_half_described(tmp_path: Path) -> None:
    text = PCMIS.read_text(encoding="utf-8")
    writes = text.index("    risk_alert:\n      create:")
    rules = text.index("  risk_alert:\n    ExternalRef")
    without = tmp_path / "no-risks.yaml"
    without.write_text(text[:rules] + text[text.index("# How the generic") : writes], "utf-8")
    assert isinstance(build(tmp_path, mapping=str(without)), RestClient)
    half = tmp_path / "half.yaml"
    half.write_text(text[:writes], encoding="utf-8")
    with pytest.raises(ConfigError, match="risk_alert") as info:
        build(tmp_path, mapping=str(half))
    assert info.value.key == "trust.mapping"
