"""Options of the ``fhir`` (trust) and ``fhir-provider`` adapters, checked at start-up.

Every option is documented in ``docs/fhir-adapter.md``. A wrong option is a ConfigError
naming its key (``connection[0].trust.page_size``) before the first job runs; the token is
read by reference only (``token_env`` or ``token_file``), never from the config itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import ConfigDict, Field, ValidationError, field_validator

from ehr_bridge.config import Secret, read_secret, validation_error
from ehr_bridge.domain.codes import EHR_BRIDGE_FHIR_BASE, ODS_ORGANISATION_SYSTEM
from ehr_bridge.errors import ConfigError
from ehr_bridge.security.transport import TransportOptions

#: identifier system of our client references on what we write to a trust's FHIR server
CLIENT_REFERENCE_SYSTEM = f"{EHR_BRIDGE_FHIR_BASE}/Id/client-reference"
#: search parameters the trust adapter sets itself (``search`` may not override them)
MANAGED_PARAMETERS = frozenset(
    {"_lastUpdated", "_sort", "_count", "_include", "performer", "performer:identifier", "_page"}
)
_SYSTEM_AND_CODE = r"^[^|\s]+\|[^|\s]+$"


class FhirOptions(TransportOptions):
    """What both sides share: where the server is, how to authenticate, timeouts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    base_url: str = Field(pattern=r"^https?://[^?#\s]+$", description="FHIR base URL")
    auth: Literal["bearer", "none"] = "bearer"
    token_env: str | None = None
    token_file: str | None = None
    page_size: int = Field(default=100, ge=1, le=1000, description="_count per search page")
    #: whole-request deadline: connect, send, answer and body (docs/operations.md)
    timeout_seconds: float = Field(default=15, gt=0)
    read_attempts: int = Field(default=4, ge=1, le=10)


class FhirTrustOptions(FhirOptions):
    """The trust side: which ServiceRequests are ours, and how writes are identified."""

    performer: str | None = Field(
        default=None,
        pattern=r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$",
        description="Search performer=<this reference> instead of by identifier",
    )
    performer_system: str = Field(default=ODS_ORGANISATION_SYSTEM, min_length=1)
    identifier_system: str = Field(default=CLIENT_REFERENCE_SYSTEM, min_length=1)
    include_patient: bool = True
    fill_subject: bool = True
    search: dict[str, str] = Field(default_factory=dict, description="Extra search parameters")

    @field_validator("search")
    @classmethod
    def _not_managed(cls, value: dict[str, str]) -> dict[str, str]:
        """The adapter's own parameters keep paging and the cursor correct."""
        clash = sorted(set(value) & MANAGED_PARAMETERS)
        if clash:
            raise ValueError(f"{clash[0]} is set by the adapter and cannot be overridden")
        return value


class FhirProviderOptions(FhirOptions):
    """The provider side: where the collect marker lives and how referrals are delivered."""

    state_file: str = Field(min_length=1, description="Collect marker, relative to the config")
    delivery: Literal["transaction", "message"] = "transaction"
    submission_tag: str | None = Field(
        default=None,
        pattern=_SYSTEM_AND_CODE,
        description="Only collect Bundles with this system|code tag",
    )
    message_source: str = Field(default=f"{EHR_BRIDGE_FHIR_BASE}/Endpoint/ehr-bridge", min_length=1)
    message_destination: str | None = None
    target_identifier: str | None = Field(
        default=None, description="NHSD-Target-Identifier header for message delivery"
    )


Model = TypeVar("Model", bound=FhirOptions)


def parse_options(model: type[Model], options: dict[str, Any], key: str) -> Model:
    """Validate a connection's options; the first problem is a ConfigError naming its key."""
    if "token" in options:
        raise ConfigError(
            "secrets are never written in the config; use token_env or token_file",
            key=f"{key}.token",
        )
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        raise validation_error(exc, model, key) from None


def token_for(
    options: dict[str, Any], parsed: FhirOptions, *, base_dir: Path, key: str
) -> Secret | None:
    """The bearer token (``auth = "bearer"``), or None for a server without authentication."""
    if parsed.oauth2 is not None:
        if parsed.auth == "none":
            raise ConfigError('auth = "none" takes no oauth2 table', key=f"{key}.auth")
        return None  # the session's OAuth2 auth sets the bearer token
    if parsed.auth == "none":
        if parsed.token_env or parsed.token_file:
            raise ConfigError('auth = "none" takes no token', key=f"{key}.auth")
        return None
    return read_secret(options, "token", base_dir=base_dir, key=key)
