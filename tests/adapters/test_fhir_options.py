"""Options of the FHIR adapters: checked at start-up, every error naming its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.adapters.fhir import create_provider, create_trust
from ehr_bridge.adapters.registry import specs
from ehr_bridge.errors import ConfigError

BASE = "https://fhir.trust.example/R4"


def _trust(tmp_path: Path, **options: Any) -> Any:
    return create_trust(options, base_dir=tmp_path, key="trust", provider_code="IESO01")


def _provider(tmp_path: Path, **options: Any) -> Any:
    return create_provider(options, base_dir=tmp_path, key="provider", provider_code="IESO01")


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"base_url": BASE, "token_env": "T", "pagesize": 5}, "trust.pagesize"),
        ({"base_url": BASE, "token": "inline"}, "trust.token"),
        ({"base_url": "ftp://x", "token_env": "T"}, "trust.base_url"),
        ({"base_url": BASE, "token_env": "T", "page_size": 0}, "trust.page_size"),
        ({"base_url": BASE, "token_env": "T", "search": {"_count": "5"}}, "trust.search"),
        ({"base_url": BASE, "auth": "none", "token_env": "T"}, "trust.auth"),
        ({"base_url": BASE, "token_env": "EHR_BRIDGE_FHIR_TEST_UNSET"}, "trust.token_env"),
        ({"base_url": BASE}, "trust.token_env"),
        ({"base_url": BASE, "token_env": "T", "performer": "not a reference"}, "trust.performer"),
    ],
)
def test_a_wrong_trust_option_names_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], key: str
) -> None:
    monkeypatch.setenv("T", "s3cr3t-value")
    with pytest.raises(ConfigError) as caught:
        _trust(tmp_path, **options)
    assert caught.value.key == key
    assert "s3cr3t" not in str(caught.value) and "inline" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"base_url": BASE, "auth": "none"}, "provider.state_file"),
        (
            {"base_url": BASE, "auth": "none", "state_file": "m", "delivery": "post"},
            "provider.delivery",
        ),
        (
            {"base_url": BASE, "auth": "none", "state_file": "m", "submission_tag": "x"},
            "provider.submission_tag",
        ),
    ],
)
def test_a_wrong_provider_option_names_its_key(
    tmp_path: Path, options: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _provider(tmp_path, **options)
    assert caught.value.key == key


def test_a_state_file_that_cannot_exist_fails_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder must go")
    with pytest.raises(ConfigError) as caught:
        _provider(tmp_path, base_url=BASE, auth="none", state_file="blocker/marker.json")
    assert caught.value.key == "provider.state_file"


def test_no_authentication_is_a_deliberate_choice(tmp_path: Path) -> None:
    adapter = _trust(tmp_path, base_url=BASE, auth="none")
    assert "Bearer" not in repr(adapter)
    provider = _provider(tmp_path, base_url=BASE, auth="none", state_file="state/m.json")
    assert (tmp_path / "state").is_dir() and "m.json" in repr(provider)


def test_both_adapters_are_registered_with_their_roles() -> None:
    registered = specs()
    assert registered["fhir"].roles == {"trust"}
    assert {"find_by_reference", "updated_since", "write:referral_status"} <= registered[
        "fhir"
    ].capabilities
    assert registered["fhir-provider"].roles == {"provider"}
