"""Secrets by reference only, masked in every repr; the keyring from environment or file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ehr_bridge.adapters.iaptus.client import create
from ehr_bridge.config import load_config
from ehr_bridge.errors import ConfigError
from ehr_bridge.security import generate_key
from ehr_bridge.security.keyring import load_keyring, open_store

TOKEN = "tr-very-secret-token"  # a test value


def _config(tmp_path: Path, security: str) -> Path:
    path = tmp_path / "ehr-bridge.toml"
    path.write_text(f'[database]\nurl = "sqlite:///state.db"\n\n[security]\n{security}\n')
    return path


def test_a_key_written_into_the_config_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, f'encryption_key = "{generate_key()}"'))
    assert caught.value.key == "security" and "encryption_key_env" in str(caught.value)


def test_the_keyring_comes_from_an_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EHR_KEYS", f"{generate_key()},{generate_key()}")
    config = load_config(_config(tmp_path, 'encryption_key_env = "EHR_KEYS"'))
    ring = load_keyring(config.security, config.base_dir)
    assert ring is not None and len(ring.ids) == 2
    monkeypatch.delenv("EHR_KEYS")
    with pytest.raises(ConfigError) as caught:
        load_keyring(config.security, config.base_dir)
    assert caught.value.key == "security.encryption_key_env"


def test_the_keyring_comes_from_a_file_and_a_shared_file_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text(generate_key() + "\n")
    keyfile.chmod(0o644)
    config = load_config(_config(tmp_path, 'encryption_key_file = "keys"'))
    with caplog.at_level(logging.WARNING):
        store = open_store(config)
    assert store.cipher.enabled
    store.close()
    assert any(
        "open to other users" in r.getMessage() and str(keyfile) in r.getMessage()
        for r in caplog.records
    )
    assert keyfile.read_text().strip() not in caplog.text


def test_without_a_key_the_store_refuses_unless_a_test_store_opts_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError, match="no key is configured") as caught:
        open_store(load_config(_config(tmp_path, "")))
    assert caught.value.key == "security.encryption_key_file"
    opted_out = load_config(_config(tmp_path, "require_encryption = false"))
    with caplog.at_level(logging.WARNING):
        store = open_store(opted_out)
    assert not store.cipher.enabled and "unencrypted" in caplog.text
    store.close()


def test_no_repr_of_a_config_or_an_adapter_shows_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRUST_TOKEN", TOKEN)
    (tmp_path / "client-secret").write_text("cs-from-file\n")
    options = {
        "base_url": "https://trust.example/api",
        "oauth2": {
            "token_url": "https://login.trust.example/token",
            "client_id": "bridge",
            "client_secret_file": "client-secret",
        },
    }
    oauth = create(options, base_dir=tmp_path, key="trust", provider_code="IESO01")
    static = create(
        {"base_url": "https://trust.example/api", "token_env": "TRUST_TOKEN"},
        base_dir=tmp_path, key="trust", provider_code="IESO01",
    )  # fmt: skip
    key = generate_key()
    monkeypatch.setenv("KEYRING", key)
    config = load_config(_config(tmp_path, 'encryption_key_env = "KEYRING"'))
    texts = [repr(oauth), str(oauth), repr(static), repr(static._http), repr(config), str(config)]
    texts += [repr(oauth._http.auth), repr(open_store(config).cipher)]
    for text in texts:
        assert TOKEN not in text and "cs-from-file" not in text and key not in text
