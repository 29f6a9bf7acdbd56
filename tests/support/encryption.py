"""Encrypted test stores, as an operator sets one up: a keyring file and the section naming it.

A config without ``[security]`` refuses to open its store (encryption is on by default), so
a test that writes a config and then runs the CLI, or opens the store through
``open_store``, either names a keyring made here or says ``require_encryption = false``
(a test store with test connections only).
"""

from __future__ import annotations

import os
from pathlib import Path

from ehr_bridge.security import generate_key

KEYRING = "secrets/keyring"
#: for a config with test connections only, as the docs allow for test stores
PLAIN_TEST_STORE = "[security]\nrequire_encryption = false  # a test store\n"


def write_keyring(folder: Path, name: str = KEYRING) -> Path:
    """A keyring file with one fresh key, created 0600 as `ehr-bridge keys generate` does."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(generate_key() + "\n")
    return path


def security_section(folder: Path, name: str = KEYRING) -> str:
    """A ``[security]`` section naming a new keyring in ``folder`` (the config's folder)."""
    write_keyring(folder, name)
    return f'[security]\nencryption_key_file = "{name}"\n'
