"""Patient data safe in transit, at rest and in logs; hostile input contained.

See docs/security.md for the threat model and where each control is tested. This package
exports what adapters and the store use; the store-level operations live in modules of
their own, imported by path, because they import the store (which imports this package):
``ehr_bridge.security.keyring`` (the keyring from the config, ``open_store``),
``ehr_bridge.security.rotation`` (``keys rotate``) and ``ehr_bridge.security.retention``.
"""

from ehr_bridge.security.crypto import IntegrityError, KeyRing, PayloadCipher, generate_key
from ehr_bridge.security.limits import InputLimitError, InputLimits, json_depth, loads_limited
from ehr_bridge.security.transport import (
    OAuth2ClientCredentials,
    OAuth2Options,
    SecureSession,
    TlsOptions,
    TransportOptions,
    build_session,
    require_secure_url,
)

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
