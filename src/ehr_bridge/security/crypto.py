"""AES-256-GCM for the payloads the store keeps: FHIR resources and quarantined records.

A **keyring** holds one or more 256-bit keys. The first one encrypts; every one decrypts,
so a key is rotated in without stopping anything: put the new key first, run
``ehr-bridge keys rotate`` (which re-encrypts every row still on an older key), then drop
the old key. A key's id is the first 16 hex digits of its SHA-256: it is stored beside each
row (``key_id``), names the key in messages and cannot be mistyped or mismatched, and it
gives nothing away about the key.

Each sealed value is ``v1.`` + base64url(nonce || ciphertext || tag), with a fresh random
96-bit nonce. The row's identity (``resource/Patient/<id>``) is the associated data, so a
ciphertext copied onto another row, or edited, fails to open instead of showing another
patient's data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ehr_bridge.errors import ConfigError, EhrBridgeError

KEY_BYTES = 32
NONCE_BYTES = 12
PREFIX = "v1."
_SEPARATORS = re.compile(r"[\s,]+")


class IntegrityError(EhrBridgeError):
    """A stored payload does not open with its key: edited, moved to another row, or corrupt."""

    code = "integrity"


def key_id_of(key: bytes) -> str:
    """The id stored beside every row this key encrypted."""
    return hashlib.sha256(key).hexdigest()[:16]


def generate_key() -> str:
    """A new random key, base64url-encoded, as a keyring file or variable holds it."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def _decode_key(text: str, position: int, source: str) -> bytes:
    """One key from its base64 text; the message names its position, never its text."""
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"key {position} is not a base64 256-bit key (make one with `ehr-bridge keys "
            "generate`)",
            key=source,
        )
    return key


class KeyRing:
    """The keys the store may use: the first encrypts, all decrypt."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ConfigError("the keyring holds no key", key="security")
        self._keys: dict[str, bytes] = {}
        for key in keys:
            self._keys.setdefault(key_id_of(key), key)
        self.active_id = key_id_of(keys[0])

    @classmethod
    def parse(cls, text: str, *, source: str = "security") -> KeyRing:
        """Keys separated by newlines, spaces or commas; ``#`` starts a comment line."""
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        parts = [p for p in _SEPARATORS.split("\n".join(lines)) if p]
        return cls([_decode_key(part, n, source) for n, part in enumerate(parts, start=1)])

    @property
    def ids(self) -> list[str]:
        """Every key id, the active one first."""
        return list(self._keys)

    def key(self, key_id: str) -> bytes | None:
        """The key with this id, or None when the ring does not hold it."""
        return self._keys.get(key_id)

    def __repr__(self) -> str:
        return f"KeyRing(active={self.active_id!r}, keys={len(self._keys)})"

    __str__ = __repr__


class PayloadCipher:
    """Seals and opens stored payloads; without a keyring it stores plain text (key id None).

    Without a keyring is for test stores only: the config requires one unless it says
    ``require_encryption = false``, and a store holding rows sealed with a key the cipher
    lacks is refused when opened (``require_keys``). Rows written before a key was
    configured (key id None) still open, and ``ehr-bridge keys rotate`` encrypts them.
    """

    def __init__(self, ring: KeyRing | None = None) -> None:
        self.ring = ring

    @property
    def enabled(self) -> bool:
        """True when new payloads are encrypted."""
        return self.ring is not None

    @property
    def active_id(self) -> str | None:
        """The id new payloads are stored under (None: plain text)."""
        return self.ring.active_id if self.ring else None

    def require_keys(self, stored_key_ids: Iterable[str]) -> None:
        """Refuse a store holding payloads this cipher cannot open: fail closed.

        Opening it anyway would either fail row by row mid-run or, worse, write new
        versions of those rows in plain text or under another key. Plain rows (no key id)
        are no reason to refuse: ``keys rotate`` seals them once a key is configured.

        Raises:
            ConfigError: a stored payload is sealed with a key the keyring does not hold
                (or no keyring is configured); the message names those key ids.
        """
        missing = sorted(
            {k for k in stored_key_ids if self.ring is None or self.ring.key(k) is None}
        )
        if not missing:
            return
        plural = "s" if len(missing) > 1 else ""
        held = (
            f"the configured keyring holds only {', '.join(self.ring.ids)}"
            if self.ring
            else "no encryption key is configured"
        )
        raise ConfigError(
            f"the store holds payloads encrypted with key{plural} {', '.join(missing)}, but "
            f"{held}: point encryption_key_file or encryption_key_env at the keyring holding "
            f"key{plural} {', '.join(missing)}; the store is not opened without it",
            key="security",
        )

    def seal(self, text: str, aad: str) -> tuple[str, str | None]:
        """``(stored text, key id)`` for a payload of the row ``aad`` names."""
        if self.ring is None:
            return text, None
        nonce = os.urandom(NONCE_BYTES)
        key = self.ring.key(self.ring.active_id)
        assert key is not None  # the active id always names a key of the ring
        sealed = AESGCM(key).encrypt(nonce, text.encode("utf-8"), aad.encode("utf-8"))
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode(
            "ascii"
        ), self.ring.active_id

    def open(self, stored: str, key_id: str | None, aad: str) -> str:
        """The payload text of a row, whichever key of the ring sealed it.

        Raises:
            ConfigError: the row was sealed with a key the ring does not hold.
            IntegrityError: the stored text does not open (edited, moved or corrupt).
        """
        if key_id is None:
            return stored
        key = self.ring.key(key_id) if self.ring else None
        if key is None:
            raise ConfigError(
                f"{aad} is encrypted with key {key_id}, which the keyring does not hold",
                key="security.encryption_key_file",
            )
        try:
            raw = base64.urlsafe_b64decode(stored.removeprefix(PREFIX).encode("ascii"))
            plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad.encode())
        except (InvalidTag, ValueError, binascii.Error):
            raise IntegrityError(f"{aad}: the stored payload does not open with its key") from None
        return plain.decode("utf-8")

    def __repr__(self) -> str:
        return f"PayloadCipher(ring={self.ring!r})"


def resource_aad(resource_type: str, resource_id: str) -> str:
    """The associated data of a ``resource`` row: its type and id."""
    return f"resource/{resource_type}/{resource_id}"


def quarantine_aad(payload_hash: str) -> str:
    """The associated data of a ``quarantine`` row: the hash of its plain payload."""
    return f"quarantine/{payload_hash}"
