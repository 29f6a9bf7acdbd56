"""Where each secret comes from: the keyring, trust and provider tokens, OAuth2 secrets.

Every check says where a secret is read from (a variable's name, a file's path) and
whether it is there, readable and private; none reads more of a secret than whether it
is empty, and none prints any of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ehr_bridge.config import AppConfig
from ehr_bridge.errors import ConfigError
from ehr_bridge.observability.doctor.model import Findings
from ehr_bridge.security.crypto import KeyRing
from ehr_bridge.security.files import open_to_others
from ehr_bridge.security.keyring import load_keyring, resolve

#: the adapters that send a bearer token unless told otherwise (``auth = "none"``, oauth2)
TOKEN_ADAPTERS = frozenset({"iaptus", "rest", "fhir", "fhir-provider"})
SAME_ENVIRONMENT = (
    "set it where the daemon's environment comes from (the unit's EnvironmentFile) and run "
    "doctor with that environment (docs/operations.md, Install)"
)
_KEYRING_FIX = {
    "security.encryption_key_env": SAME_ENVIRONMENT,
    "security.encryption_key_file": "check the file holds the keys `ehr-bridge keys generate` "
    "wrote (base64, one a line); restore it from its backup if it was changed",
}


@contextlib.contextmanager
def quiet(*names: str) -> Iterator[None]:
    """Hold back the warnings doctor reports as checks of its own (key file modes)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def check_keyring(found: Findings, config: AppConfig) -> KeyRing | None:
    """The ``keys`` check: the keyring loads, and its file is the daemon's alone.

    Returns the keyring when it loaded (None when it did not, or none is configured).
    """
    security = config.security
    if not security.encryption_key_env and not security.encryption_key_file:
        if security.require_encryption:
            found.fail(
                "keys",
                "no encryption key is configured ([security]) and encryption is required",
                "create a keyring with `ehr-bridge keys generate` and name it in "
                "security.encryption_key_file (docs/security.md)",
            )
        else:
            found.warn(
                "keys",
                "require_encryption = false: payloads are stored in plain text",
                "only a test store may; configure a keyring (`ehr-bridge keys generate`) "
                "before any live connection",
            )
        return None
    path = None
    if security.encryption_key_file and not security.encryption_key_env:
        path = resolve(security.encryption_key_file, config.base_dir)
        if not path.exists():
            found.fail(
                "keys",
                f"keyring file {path} (security.encryption_key_file) does not exist",
                "a new store: `ehr-bridge keys generate`; an existing store: restore the "
                "keyring from its backup (without it the stored payloads cannot be read)",
            )
            return None
    try:
        with quiet("ehr_bridge.security.files"):
            ring = load_keyring(security, config.base_dir)
    except ConfigError as exc:
        fix = _KEYRING_FIX.get(exc.key or "", "see docs/security.md, Encryption at rest")
        found.fail("keys", exc.safe_message, fix)
        return None
    if ring is None:  # not reached: a configured source always gives a ring or an error
        return None
    source = f"file {path}" if path else f"variable {security.encryption_key_env}"
    if path is not None and private_or_warn(found, "keys", path, "security.encryption_key_file"):
        return ring
    found.passed(
        "keys", f"keyring ({source}) holds {len(ring.ids)} key(s); active key {ring.active_id}"
    )
    return ring


def private_or_warn(found: Findings, check: str, path: Path, key: str) -> bool:
    """WARN (and return True) when other users may read or write the key file ``path``."""
    mode = open_to_others(path)
    if mode is None:
        return False
    found.warn(
        check,
        f"key file {path} ({key}) is open to other users (mode {mode:04o}: its group or "
        "others may read or write it)",
        f"chmod 600 {path}",
    )
    return True


def check_token(
    found: Findings,
    side: str,
    adapter: str,
    options: Mapping[str, Any],
    *,
    base_dir: Path,
    key: str,
) -> bool:
    """The ``token`` check of one side's adapter; False when its credentials are missing."""
    oauth2 = options.get("oauth2")
    if isinstance(oauth2, Mapping):
        client = oauth2.get("client_id", "?")
        what = f"{side} OAuth2 client secret (client_id {client})"
        return check_secret(found, oauth2, "client_secret", what, base_dir, f"{key}.oauth2")
    if options.get("auth") == "none":
        found.passed("token", f'{side}: no token sent ({key}.auth = "none")')
        return True
    if adapter not in TOKEN_ADAPTERS and not (
        options.get("token_env") or options.get("token_file")
    ):
        return True  # an adapter without credentials (a folder, HL7 v2)
    return check_secret(found, options, "token", f"{side} token", base_dir, key)


def check_secret(
    found: Findings, options: Mapping[str, Any], name: str, what: str, base_dir: Path, key: str
) -> bool:
    """``<name>_env`` or ``<name>_file`` (read in that order, as ``config.read_secret``)."""
    env_name, file_name = options.get(f"{name}_env"), options.get(f"{name}_file")
    if env_name:
        if os.environ.get(str(env_name)):
            found.passed("token", f"{what} from environment variable {env_name} (set)")
            return True
        found.fail(
            "token",
            f"{what}: environment variable {env_name} ({key}.{name}_env) is not set",
            SAME_ENVIRONMENT,
        )
        return False
    if not file_name:
        found.fail("token", f"{what}: none configured", f"set {key}.{name}_env or {name}_file")
        return False
    path = resolve(str(file_name), base_dir)
    where = f"{key}.{name}_file"
    if not path.is_file():
        found.fail(
            "token",
            f"{what}: file {path} ({where}) does not exist",
            f"put the {what} the other side issued in {path} (mode 0600, the daemon's user)",
        )
        return False
    try:
        empty = not path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        found.fail(
            "token",
            f"{what}: file {path} ({where}) cannot be read ({type(exc).__name__})",
            f"let the daemon's user read it: chown ehr-bridge {path}; chmod 600 {path}",
        )
        return False
    if empty:
        found.fail("token", f"{what}: file {path} ({where}) is empty", f"put the {what} in it")
        return False
    if not private_or_warn(found, "token", path, where):
        found.passed("token", f"{what} from file {path} (mode 0600 or stricter)")
    return True
