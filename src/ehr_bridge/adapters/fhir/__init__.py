"""FHIR R4 REST adapters: ``fhir`` for a trust, ``fhir-provider`` for a therapy platform.

The trust side (``FhirTrust``) pulls referrals by ServiceRequest search and writes session
artefacts back as transaction Bundles with conditional creates; the provider side
(``FhirProvider``) puts referrals on the platform's FHIR server and collects the session
Bundles the platform stores there. Both are described in ``docs/fhir-adapter.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ehr_bridge.adapters._advice import advice_for
from ehr_bridge.adapters.fhir._http import FhirHttp
from ehr_bridge.adapters.fhir._marker import Marker, MarkerFile
from ehr_bridge.adapters.fhir._options import (
    CLIENT_REFERENCE_SYSTEM,
    FhirOptions,
    FhirProviderOptions,
    FhirTrustOptions,
    parse_options,
    token_for,
)
from ehr_bridge.adapters.fhir._provider import FhirProvider
from ehr_bridge.adapters.fhir._trust import FhirTrust
from ehr_bridge.security.transport import build_session

__all__ = [
    "CLIENT_REFERENCE_SYSTEM",
    "FhirHttp",
    "FhirProvider",
    "FhirProviderOptions",
    "FhirTrust",
    "FhirTrustOptions",
    "Marker",
    "MarkerFile",
    "create_provider",
    "create_trust",
]


def _http(options: dict[str, Any], parsed: FhirOptions, base_dir: Path, key: str) -> FhirHttp:
    token = token_for(options, parsed, base_dir=base_dir, key=key)
    return FhirHttp(
        parsed.base_url,
        token,
        timeout=parsed.timeout_seconds,
        read_attempts=parsed.read_attempts,
        session=build_session(
            parsed, options, base_url=parsed.base_url, base_dir=base_dir, key=key
        ),
        advice=advice_for(options, key, parsed.base_url),
    )


def create_trust(
    options: dict[str, Any], *, base_dir: Path, key: str, provider_code: str
) -> FhirTrust:
    """The ``fhir`` trust adapter, its options validated at start-up."""
    parsed = parse_options(FhirTrustOptions, options, key)
    return FhirTrust(parsed, _http(options, parsed, base_dir, key), provider_code)


def create_provider(
    options: dict[str, Any], *, base_dir: Path, key: str, provider_code: str
) -> FhirProvider:
    """The ``fhir-provider`` adapter; ``state_file`` is relative to the config's folder."""
    parsed = parse_options(FhirProviderOptions, options, key)
    path = Path(parsed.state_file)
    marker = MarkerFile(path if path.is_absolute() else base_dir / path, key=f"{key}.state_file")
    return FhirProvider(parsed, _http(options, parsed, base_dir, key), marker)
