"""A key file other users may read or write is reported at start-up, naming the path only.

Real files with real modes: the encryption keyring (``open_store``), a TLS client key, a
bearer token file and an OAuth2 client secret file (each as an adapter is built from its
options, the way start-up builds it). Group- or world-readable, or group-writable: one
WARNING naming the file and its config key, never what is in it. 0600: nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from ehr_bridge.adapters.fhir import create_trust
from ehr_bridge.adapters.iaptus.client import create
from ehr_bridge.config import load_config
from ehr_bridge.security.crypto import generate_key
from ehr_bridge.security.keyring import open_store

SECRET = "not-for-anyone-else-3141"
SHARED_MODES = (0o644, 0o640, 0o604, 0o620, 0o602)


def _file(folder: Path, name: str, text: str, mode: int) -> Path:
    path = folder / name
    path.write_text(text, "utf-8")
    path.chmod(mode)
    return path


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def _iaptus(folder: Path, **options: Any) -> None:
    create(
        {"base_url": "https://trust.example/api/v1", **options},
        base_dir=folder,
        key="connection[0].trust",
        provider_code="IESO01",
    )


def _keyring(folder: Path, mode: int) -> Path:
    _file(folder, "keyring", generate_key() + "\n", mode)
    config = folder / "ehr-bridge.toml"
    config.write_text(
        '[database]\nurl = "sqlite:///state.db"\n[security]\nencryption_key_file = "keyring"\n',
        "utf-8",
    )
    open_store(load_config(config)).close()
    return folder / "keyring"


def _client_key(folder: Path, mode: int) -> Path:
    _file(folder, "client.pem", "certificate", 0o644)  # a certificate is public: no warning
    _file(folder, "client.key", SECRET, mode)
    _file(folder, "token", SECRET, 0o600)
    tls = {"client_cert_file": "client.pem", "client_key_file": "client.key"}
    _iaptus(folder, token_file="token", tls=tls)
    return folder / "client.key"


def _token(folder: Path, mode: int) -> Path:
    _file(folder, "token", SECRET, mode)
    _iaptus(folder, token_file="token")
    return folder / "token"


def _client_secret(folder: Path, mode: int) -> Path:
    _file(folder, "oauth2-secret", SECRET, mode)
    oauth2 = {
        "token_url": "https://login.trust.example/token",
        "client_id": "ehr-bridge",
        "client_secret_file": "oauth2-secret",
    }
    create_trust(
        {"base_url": "https://fhir.trust.example/R4", "oauth2": oauth2},
        base_dir=folder,
        key="connection[0].trust",
        provider_code="IESO01",
    )
    return folder / "oauth2-secret"


KEY_FILES = {
    "security.encryption_key_file": _keyring,
    "connection[0].trust.tls.client_key_file": _client_key,
    "connection[0].trust.token_file": _token,
    "connection[0].trust.oauth2.client_secret_file": _client_secret,
}


@pytest.mark.parametrize("mode", SHARED_MODES, ids=oct)
@pytest.mark.parametrize("key", sorted(KEY_FILES))
def test_a_key_file_open_to_other_users_is_reported_by_path_and_key(
    key: str, mode: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        path = KEY_FILES[key](tmp_path, mode)
    (warning,) = _warnings(caplog)
    assert str(path) in warning and f"({key})" in warning and f"{mode:04o}" in warning
    assert "chmod 600" in warning
    assert SECRET not in caplog.text and path.read_text("utf-8").strip() not in caplog.text


@pytest.mark.parametrize("key", sorted(KEY_FILES))
def test_a_private_key_file_is_not_reported(
    key: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        KEY_FILES[key](tmp_path, 0o600)
    assert _warnings(caplog) == []
