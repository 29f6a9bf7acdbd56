"""The three ports every connection is built from, and the records that cross them.

The engine talks only to these protocols; adapters never import the engine. Each method
is small so that a fake (``adapters.memory``) can stand in for a real system in tests.
``TrustReader``, ``TrustUpdater`` and ``RiskAcknowledger`` are optional: a trust adapter
that has them declares the matching capabilities in its spec, and the support commands (or,
for acknowledgements, the engine's risk escalation) use them. An adapter whose capabilities
depend on its mapping (the generic ``rest`` adapter's read-back endpoints) names them in its
spec's ``mapping_capabilities`` and reports which it has (``ReportsCapabilities``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from ehr_bridge.domain.ids import TRUST_ID_SHAPE, is_trust_id
from ehr_bridge.errors import TerminalError

JsonDict = dict[str, Any]
#: what a trust's user or staff id may look like to be kept: never a name or free text
STAFF_ID = re.compile(r"[A-Za-z0-9._@-]{1,64}")


def require_trust_id(value: object, what: str) -> None:
    """Refuse an id the trust gave for ``what`` unless it has the shape of one; never echo it.

    Raises:
        TerminalError: code ``trust_id_shape``.
    """
    if not is_trust_id(value):
        raise TerminalError(
            f"the trust's id for {what} is not an id ({TRUST_ID_SHAPE}): refused, not stored",
            code="trust_id_shape",
        )


@dataclass(frozen=True)
class SourcePage:
    """One page of trust records, in the trust's own JSON shape (before mapping)."""

    records: list[JsonDict]
    #: opaque token for the next page, or None when this was the last page
    next_page: str | None = None


@dataclass(frozen=True)
class WriteItem:
    """One artefact to write into the trust record, already mapped to the trust's payload."""

    kind: str  # care_contact | clinical_note | assessment | referral_status | risk_alert
    trust_referral_id: str
    client_reference: str  # our idempotency key; the trust stores it and can be searched by it
    payload: JsonDict


@dataclass(frozen=True)
class WriteReceipt:
    """What the trust answered for a write: its own id for the item.

    Built by every adapter from what the trust sent, so the id's shape is checked here,
    once for all of them, before the engine can store it or a command print it.

    Raises:
        TerminalError: (code ``trust_id_shape``) the id is not of ``TRUST_ID_PATTERN``'s
            shape; the message never repeats it.
    """

    trust_id: str
    already_present: bool = False
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_trust_id(self.trust_id, "the written item")


@dataclass(frozen=True)
class ProviderSubmission:
    """A bundle of session artefacts the provider platform produced, with a handle to ack it."""

    handle: str  # adapter-specific; passed back to ``acknowledge`` once stored
    bundle: JsonDict


@runtime_checkable
class TrustSource(Protocol):
    """Pulls referrals that were referred on to our provider."""

    def fetch_referrals(self, *, updated_since: datetime | None, page: str | None) -> SourcePage:
        """One page of referrals changed at or after ``updated_since`` (closed start)."""
        ...


@runtime_checkable
class TrustWriter(Protocol):
    """Writes session artefacts and status updates back into the trust record."""

    def write(self, item: WriteItem) -> WriteReceipt:
        """Create the item; a duplicate client reference answers with the existing id."""
        ...

    def find(self, item: WriteItem) -> WriteReceipt | None:
        """The trust's copy of an item with this client reference, if it has one."""
        ...


@dataclass(frozen=True)
class TrustItem:
    """One item the trust holds on a referral, read back for reconciliation.

    ``fields`` is the item as the trust's API shows it, in the same shape as the payload
    we write (the outbound mapping's output), so the two can be compared field by field.
    Its ``trust_id`` is checked as a ``WriteReceipt``'s is: reconcile prints and adopts it.
    """

    trust_id: str
    client_reference: str | None
    fields: JsonDict
    version: str | None = None

    def __post_init__(self) -> None:
        require_trust_id(self.trust_id, "an item read back")


@runtime_checkable
class TrustReader(Protocol):
    """Optional: reads the trust back (capabilities ``read_items`` and ``fetch_referral``).

    ``reconcile`` compares what the trust holds with what we wrote; `quarantine retry`
    re-pulls one record after it was fixed at the trust.
    """

    def list_items(self, trust_referral_id: str, kind: str) -> list[TrustItem]:
        """Every item of one kind on a referral (ours and the trust's own), oldest first."""
        ...

    def fetch_referral(self, trust_referral_id: str) -> JsonDict | None:
        """One referral in the trust's own shape, or None when the trust has no such id."""
        ...


@runtime_checkable
class ReportsCapabilities(Protocol):
    """Optional: an adapter that says which capabilities its mapping or options give it.

    Only those its spec lists under ``mapping_capabilities`` count
    (``registry.capabilities_of``); an adapter cannot claim more than its spec allows.
    """

    @property
    def capabilities(self) -> frozenset[str]:
        """The capabilities this instance has, as built from its mapping and options."""
        ...


@runtime_checkable
class TrustUpdater(Protocol):
    """Optional: overwrites an item at the trust (capability ``update_items``).

    Used only by ``reconcile --repair --force``, to put back what we wrote over an edit
    made at the trust.
    """

    def update(self, item: WriteItem, trust_id: str) -> WriteReceipt:
        """Replace the trust's item ``trust_id`` with ``item``'s payload."""
        ...


@runtime_checkable
class ProviderPort(Protocol):
    """The provider's therapy platform: referrals go in, session bundles come out."""

    def deliver_referral(self, service_request_id: str, bundle: JsonDict) -> None:
        """Hand over a referral bundle; delivering the same id again replaces it harmlessly."""
        ...

    def pending_submissions(self) -> Iterator[ProviderSubmission]:
        """Session bundles not yet acknowledged, oldest first."""
        ...

    def acknowledge(self, handle: str) -> None:
        """Mark a submission as stored so it is not offered again."""
        ...


@runtime_checkable
class RejectingProvider(Protocol):
    """Optional: keeps submissions it could not read apart from the stored ones."""

    def reject(self, handle: str) -> None:
        """Set an unreadable submission aside (quarantined already) so it is not offered again."""
        ...


@dataclass(frozen=True)
class RiskAcknowledgement:
    """Someone at the trust has seen a risk alert we wrote.

    ``at`` is when the trust says it was acknowledged (timezone-aware); ``by`` is the
    trust's own user or staff id for whoever did it, kept only when it has the shape of an
    id (``staff_id``), never a name, so no patient or staff name ever reaches the store.
    """

    at: datetime
    by: str | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("RiskAcknowledgement.at must be timezone-aware")
        if self.by is not None and not STAFF_ID.fullmatch(self.by):
            raise ValueError("RiskAcknowledgement.by must be a staff id (see staff_id)")


def staff_id(value: object) -> str | None:
    """``value`` if it looks like a user or staff id (1..64 of ``A-Z a-z 0-9 . _ @ -``), else None.

    Adapters pass whatever the trust names as the acknowledging user through this, so a
    display name, free text or anything hostile becomes None rather than stored data.
    """
    return value if isinstance(value, str) and STAFF_ID.fullmatch(value) else None


@runtime_checkable
class RiskAcknowledger(Protocol):
    """Optional: reads back whether a written risk alert was acknowledged at the trust.

    Capability ``read_acknowledgement``. ``trust_id`` is the id the write's receipt named.
    None means "not acknowledged yet"; an alert the trust no longer holds, or an answer that
    cannot be read, is an error from the error tree, never a guess either way.
    """

    def acknowledgement(self, item: WriteItem, trust_id: str) -> RiskAcknowledgement | None:
        """The acknowledgement of the risk alert ``trust_id`` (written as ``item``), if any."""
        ...


@dataclass(frozen=True)
class KeptFile:
    """A file an adapter keeps after the store holds what it says: plain patient data.

    ``folder`` names where it is for counts (``sessions/processed``, ``received``);
    ``name`` is its name there. ``quarantine_ref`` is set when the file is the only copy
    of what a quarantine entry refers to (that entry's ``record_ref``): it is kept while
    the entry's own raw record would be.
    """

    folder: str
    name: str
    kept_since: datetime
    quarantine_ref: str | None = None


@runtime_checkable
class KeepsFiles(Protocol):
    """Optional: an adapter that keeps files after their content is stored (retention)."""

    def kept_files(self, before: datetime) -> Iterator[KeptFile]:
        """The files it set aside before ``before``."""
        ...

    def remove_kept(self, kept: KeptFile) -> bool:
        """Delete one of them; False when it was gone already."""
        ...
