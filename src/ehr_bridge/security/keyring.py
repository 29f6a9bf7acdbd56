"""The keyring named by ``[security]`` in the config, and the store opened with it.

Every command and the daemon open the store through ``open_store``, and it fails closed:
without a configured key it refuses (``ConfigError``, exit 2) unless the config opts out
with ``require_encryption = false``, which only a test store may; and a store holding
payloads sealed with a key the keyring lacks is refused naming that key's id, whatever the
config says (``PayloadCipher.require_keys``, checked when the ``Store`` opens).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import exists
from sqlalchemy import select as core_select
from sqlmodel import col

from ehr_bridge.config import AppConfig, SecurityConfig, read_secret
from ehr_bridge.errors import ConfigError
from ehr_bridge.security.crypto import KeyRing, PayloadCipher
from ehr_bridge.security.files import warn_if_shared
from ehr_bridge.store import QuarantineRow, ResourceRow, Store

log = logging.getLogger(__name__)

NO_KEY = (
    "encryption is required and no key is configured: set encryption_key_file (create the "
    "file with `ehr-bridge keys generate`) or encryption_key_env; only a test store may "
    "say require_encryption = false"
)


def load_keyring(security: SecurityConfig, base_dir: Path) -> KeyRing | None:
    """The configured keyring, or None when none is configured and the config opts out.

    Raises:
        ConfigError: the variable or file is missing or holds no valid key, or no key is
            configured while ``require_encryption`` is on (the default).
    """
    options = {
        "encryption_key_env": security.encryption_key_env,
        "encryption_key_file": security.encryption_key_file,
    }
    if not security.encryption_key_env and not security.encryption_key_file:
        if security.require_encryption:
            raise ConfigError(NO_KEY, key="security.encryption_key_file")
        return None
    if security.encryption_key_file and not security.encryption_key_env:
        path = resolve(security.encryption_key_file, base_dir)
        if not path.exists():
            raise ConfigError(
                f"the keyring file {path} does not exist: for a new store create it with "
                "`ehr-bridge keys generate`; for an existing store restore it from its backup",
                key="security.encryption_key_file",
            )
        warn_if_shared(path, "security.encryption_key_file")
    secret = read_secret(options, "encryption_key", base_dir=base_dir, key="security")
    source = "security.encryption_key_" + ("env" if security.encryption_key_env else "file")
    return KeyRing.parse(secret.reveal(), source=source)


def payload_cipher(config: AppConfig) -> PayloadCipher:
    """The cipher the store seals payloads with (plain text only where the config opts out)."""
    return PayloadCipher(load_keyring(config.security, config.base_dir))


def open_store(config: AppConfig, *, migrate: bool | None = None) -> Store:
    """The state store named in the config, sealing payloads with the configured keyring.

    Raises:
        ConfigError: no key while one is required, a key source that cannot be read, or a
            store holding payloads sealed with a key the keyring does not hold.
    """
    cipher = payload_cipher(config)
    store = Store(config.database_url(), migrate=migrate, cipher=cipher)
    if not cipher.enabled:
        log.warning(
            "payloads are stored unencrypted: require_encryption = false (test stores only)"
        )
    elif holds_plain_payloads(store):
        log.warning(
            "some payloads are still in plain text (written before a key was configured): "
            "run `ehr-bridge keys rotate`"
        )
    return store


def holds_plain_payloads(store: Store) -> bool:
    """True when a payload row is neither sealed nor purged (``keys rotate`` seals it)."""
    with store.session() as s:
        for model in (ResourceRow, QuarantineRow):
            plain = exists().where(col(model.key_id).is_(None), col(model.purged_at).is_(None))
            if s.execute(core_select(plain)).scalar():
                return True
    return False


def resolve(name: str, base_dir: Path) -> Path:
    """A path from the security section, relative to the config file's folder."""
    path = Path(name)
    return path if path.is_absolute() else base_dir / path
