"""Opaque keyset page tokens for the referral listing.

A token holds the (updated_at, key) of the last item served and a fingerprint of the query
it belongs to. Keyset paging (rather than offsets) keeps pages stable while writes move
referrals to the end of the order: an item changed mid-walk is served again later, never
skipped. A token replayed against a different query is refused with the field named.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from ehr_bridge.errors import RecordValidationError
from ehr_bridge.sim.records import parse_timestamp


@dataclass(frozen=True)
class Position:
    """Where the previous page ended in the (updated_at, key) order."""

    updated: datetime
    key: str


def query_fingerprint(referred_on_to: str | None, updated_since: datetime | None) -> str:
    """A short digest binding a token to the filters it was issued for."""
    since = updated_since.isoformat() if updated_since else ""
    digest = hashlib.sha256(json.dumps([referred_on_to, since]).encode()).hexdigest()
    return digest[:16]


def encode(position: Position, fingerprint: str) -> str:
    """The opaque token a client sends back as ``page_token``."""
    payload = {"u": position.updated.isoformat(), "k": position.key, "q": fingerprint}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, fingerprint: str) -> Position:
    """The position a token stands for.

    Raises:
        RecordValidationError: the token is not one of ours, or was issued for another query.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        position = Position(parse_timestamp(payload["u"]), str(payload["k"]))
        issued_for = payload["q"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise RecordValidationError("not a valid page token", field="page_token") from exc
    if issued_for != fingerprint:
        raise RecordValidationError("page token belongs to another query", field="page_token")
    return position
