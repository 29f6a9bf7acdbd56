"""The keyring named by ``[security]`` in the config, and the store opened with it.

Every command and the daemon should open the store through ``open_store`` so that
payloads are sealed with the configured key; a store opened without one writes plain text
(and ``keys status`` shows it).
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from ehr_bridge.config import AppConfig, SecurityConfig, read_secret
from ehr_bridge.errors import ConfigError
from ehr_bridge.security.crypto import KeyRing, PayloadCipher
from ehr_bridge.store import Store

log = logging.getLogger(__name__)


def load_keyring(security: SecurityConfig, base_dir: Path) -> KeyRing | None:
    """The configured keyring, or None when none is configured (and none is required).

    Raises:
        ConfigError: the variable or file is missing or holds no valid key, or
            ``require_encryption`` is set without a key.
    """
    options = {
        "encryption_key_env": security.encryption_key_env,
        "encryption_key_file": security.encryption_key_file,
    }
    if not security.encryption_key_env and not security.encryption_key_file:
        if security.require_encryption:
            raise ConfigError(
                "require_encryption is set: set encryption_key_env or encryption_key_file",
                key="security.encryption_key_file",
            )
        return None
    if security.encryption_key_file:
        _warn_if_shared(_resolve(security.encryption_key_file, base_dir))
    secret = read_secret(options, "encryption_key", base_dir=base_dir, key="security")
    source = "security.encryption_key_" + ("env" if security.encryption_key_env else "file")
    return KeyRing.parse(secret.reveal(), source=source)


def payload_cipher(config: AppConfig) -> PayloadCipher:
    """The cipher the store seals payloads with (plain text when no key is configured)."""
    return PayloadCipher(load_keyring(config.security, config.base_dir))


def open_store(config: AppConfig, *, migrate: bool | None = None) -> Store:
    """The state store named in the config, sealing payloads with the configured keyring."""
    cipher = payload_cipher(config)
    if not cipher.enabled:
        log.warning("payloads are stored unencrypted: no [security] encryption key configured")
    return Store(config.database_url(), migrate=migrate, cipher=cipher)


def _resolve(name: str, base_dir: Path) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base_dir / path


def _warn_if_shared(path: Path) -> None:
    """A key file others can read is a finding, not a stop (container secrets are 0644)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # read_secret reports the missing file with its key
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the encryption key file is readable by other users: chmod 600 it")
