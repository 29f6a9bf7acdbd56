"""In-memory fake trust with fault switches, used by tests instead of patching.

It behaves like the real API where it matters to the engine: closed-start
``updated_since``, paging, client-reference uniqueness per (referral, kind), and the
ambiguous failure where a write is committed but the answer is lost. It also reads back
and updates items (``TrustReader``, ``TrustUpdater``) for the support commands' tests, and
answers whether a risk alert was acknowledged (``RiskAcknowledger``): ``acknowledge`` plays
the trust's duty clinician.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ehr_bridge.adapters.base import (
    JsonDict,
    RiskAcknowledgement,
    SourcePage,
    TrustItem,
    WriteItem,
    WriteReceipt,
)
from ehr_bridge.errors import TerminalError, TransientError


@dataclass
class Faults:
    """Write failures: probabilities (0..1) with a fixed seed, or an exact schedule.

    ``schedule`` lists the outcome of each write call in turn ("ok", "transient",
    "ambiguous", "terminal"); once it runs out, the probabilities apply.
    """

    transient: float = 0.0
    ambiguous: float = 0.0  # committed, then the answer is lost
    terminal: float = 0.0
    seed: int = 0
    schedule: list[str] = field(default_factory=list)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.schedule = list(self.schedule)

    def roll(self, probability: float) -> bool:
        """True with the given probability."""
        return probability > 0 and self.rng.random() < probability

    def next_outcome(self) -> str:
        """The outcome of the next write call."""
        if self.schedule:
            return self.schedule.pop(0)
        if self.roll(self.transient):
            return "transient"
        if self.roll(self.terminal):
            return "terminal"
        return "ambiguous" if self.roll(self.ambiguous) else "ok"


class MemoryTrust:
    """A TrustSource and TrustWriter held in dictionaries."""

    def __init__(
        self,
        referrals: Iterable[JsonDict] = (),
        *,
        page_size: int = 50,
        faults: Faults | None = None,
    ) -> None:
        self.referrals: list[JsonDict] = list(referrals)
        self.page_size = page_size
        self.faults = faults or Faults()
        #: (trust_referral_id, kind, client_reference) -> stored item with its trust id
        self.items: dict[tuple[str, str, str], JsonDict] = {}
        self.write_calls = 0
        #: trust id of a risk alert -> its acknowledgement (set by ``acknowledge``)
        self.acknowledgements: dict[str, RiskAcknowledgement] = {}
        self.acknowledgement_calls = 0

    # --- TrustSource -----------------------------------------------------------------
    def fetch_referrals(self, *, updated_since: datetime | None, page: str | None) -> SourcePage:
        """Records changed at or after ``updated_since``, ordered, in pages."""
        selected = [r for r in self.referrals if _at_or_after(r, updated_since)]
        selected.sort(key=lambda r: (str(r.get("updated_at", "")), str(r.get("id", ""))))
        start = int(page or 0)
        chunk = selected[start : start + self.page_size]
        more = start + self.page_size < len(selected)
        return SourcePage(records=chunk, next_page=str(start + self.page_size) if more else None)

    # --- TrustWriter -----------------------------------------------------------------
    def write(self, item: WriteItem) -> WriteReceipt:
        """Store the item unless a fault fires; a repeated client reference conflicts."""
        self.write_calls += 1
        outcome = self.faults.next_outcome()
        if outcome == "transient":
            raise TransientError("memory trust: injected transient failure")
        if outcome == "terminal":
            raise TerminalError("memory trust: injected rejection")
        key = (item.trust_referral_id, item.kind, item.client_reference)
        if key in self.items:  # like the real API's 409: answer with the existing id
            return WriteReceipt(str(self.items[key]["id"]), already_present=True)
        stored = dict(item.payload, id=f"M{len(self.items) + 1:06d}")
        self.items[key] = stored
        if outcome == "ambiguous":
            raise TransientError("memory trust: answer lost after commit", ambiguous=True)
        return WriteReceipt(trust_id=str(stored["id"]))

    def find(self, item: WriteItem) -> WriteReceipt | None:
        """The stored item with this client reference, if any."""
        stored = self.items.get((item.trust_referral_id, item.kind, item.client_reference))
        return WriteReceipt(str(stored["id"]), already_present=True) if stored else None

    # --- TrustReader and TrustUpdater ------------------------------------------------
    def list_items(self, trust_referral_id: str, kind: str) -> list[TrustItem]:
        """Every stored item of one kind on a referral, in the order written."""
        return [
            TrustItem(str(stored["id"]), reference, dict(stored))
            for (referral, k, reference), stored in self.items.items()
            if referral == trust_referral_id and k == kind
        ]

    def fetch_referral(self, trust_referral_id: str) -> JsonDict | None:
        """One referral record by id, or None."""
        found = [r for r in self.referrals if r.get("id") == trust_referral_id]
        return dict(found[0]) if found else None

    def update(self, item: WriteItem, trust_id: str) -> WriteReceipt:
        """Replace the stored item that has ``trust_id`` with the item's payload."""
        key = (item.trust_referral_id, item.kind, item.client_reference)
        stored = self.items.get(key)
        if stored is None or str(stored["id"]) != trust_id:
            raise TerminalError("memory trust: no such item", code="http_404")
        self.items[key] = dict(item.payload, id=trust_id)
        return WriteReceipt(trust_id, already_present=True)

    # --- RiskAcknowledger ------------------------------------------------------------
    def acknowledgement(self, item: WriteItem, trust_id: str) -> RiskAcknowledgement | None:
        """The acknowledgement ``acknowledge`` recorded for the risk alert, or None yet."""
        self.acknowledgement_calls += 1
        stored = self.items.get((item.trust_referral_id, item.kind, item.client_reference))
        if item.kind != "risk_alert" or stored is None or str(stored["id"]) != trust_id:
            raise TerminalError("memory trust: no such risk alert", code="http_404")
        return self.acknowledgements.get(trust_id)

    def acknowledge(
        self, trust_id: str, *, by: str | None = "duty.clinician1", at: datetime | None = None
    ) -> RiskAcknowledgement:
        """Play the duty clinician: acknowledge the risk alert ``trust_id`` (now, by default)."""
        if not any(
            str(v["id"]) == trust_id for (_, k, _), v in self.items.items() if k == "risk_alert"
        ):
            raise TerminalError("memory trust: no such risk alert", code="http_404")
        found = RiskAcknowledgement(at=at or datetime.now(UTC), by=by)
        self.acknowledgements.setdefault(trust_id, found)
        return self.acknowledgements[trust_id]

    def items_of(self, kind: str) -> list[JsonDict]:
        """Everything written of one kind, for assertions."""
        return [v for (_, k, _), v in self.items.items() if k == kind]


def _at_or_after(record: JsonDict, since: datetime | None) -> bool:
    if since is None:
        return True
    raw = record.get("updated_at")
    if not isinstance(raw, str):
        return True
    try:
        stamp = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return True
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return stamp >= (since if since.tzinfo else since.replace(tzinfo=UTC))
