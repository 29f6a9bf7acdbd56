"""Patient data safe in transit, at rest and in logs; hostile input contained.

See docs/security.md for the threat model and where each control is tested. This package
exports what adapters and the store use; the store-level operations live in modules of
their own, imported by path, because they import the store (which imports this package):
``ehr_bridge.security.keyring`` (the keyring from the config, ``open_store``),
``ehr_bridge.security.rotation`` (``keys rotate``) and ``ehr_bridge.security.retention``.

The transport names (TLS sessions, OAuth2) are imported on first use: they bring in
``requests``, which the store and a command that only reads it never need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ehr_bridge.security.crypto import IntegrityError, KeyRing, PayloadCipher, generate_key
from ehr_bridge.security.limits import InputLimitError, InputLimits, json_depth, loads_limited

if TYPE_CHECKING:
    from ehr_bridge.security.transport import (
        OAuth2ClientCredentials,
        OAuth2Options,
        SecureSession,
        TlsOptions,
        TransportOptions,
        build_session,
        require_secure_url,
    )

_TRANSPORT = {
    "OAuth2ClientCredentials",
    "OAuth2Options",
    "SecureSession",
    "TlsOptions",
    "TransportOptions",
    "build_session",
    "require_secure_url",
}

__all__ = [
    "InputLimitError",
    "InputLimits",
    "IntegrityError",
    "KeyRing",
    "OAuth2ClientCredentials",
    "OAuth2Options",
    "PayloadCipher",
    "SecureSession",
    "TlsOptions",
    "TransportOptions",
    "build_session",
    "generate_key",
    "json_depth",
    "loads_limited",
    "require_secure_url",
]


def __getattr__(name: str) -> Any:
    """A transport name, imported the first time it is asked for."""
    if name in _TRANSPORT:
        return getattr(importlib.import_module("ehr_bridge.security.transport"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
