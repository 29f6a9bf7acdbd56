"""Deterministic identifiers, so that re-running any flow never mints a second resource.

Every FHIR id we create is a UUID v5 of the business key that names the thing (connection,
resource kind, trust key). Pulling the same referral twice, or collecting the same session
twice, therefore produces the same ids, and upserts stay upserts.
"""

from __future__ import annotations

import hashlib
import json
import uuid

#: Fixed namespace for every id ehr-bridge mints. It is ``uuid5(NAMESPACE_URL,
#: "https://fhir.ehr-bridge.dev")`` written out, so that a change to the base URL constant
#: can never silently re-key every stored resource.
EHR_BRIDGE_NAMESPACE = uuid.UUID("0425c4dd-1484-5fb3-874f-c427f371a3ae")

_ARTEFACT_KEY_LENGTH = 32


def resource_id(connection: str, kind: str, key: str) -> str:
    """The FHIR id for ``kind`` known as ``key`` on ``connection``; stable across runs.

    The result is a lowercase UUID with dashes: it satisfies FHIR's ``id`` rule (letters,
    digits, '-' and '.', at most 64) and can be used as a ``urn:uuid:`` full URL.
    """
    for name, part in (("connection", connection), ("kind", kind), ("key", key)):
        if not part:
            raise ValueError(f"resource_id: {name} must not be empty")
    return str(uuid.uuid5(EHR_BRIDGE_NAMESPACE, f"{connection}|{kind}|{key}"))


def artefact_key(*parts: str) -> str:
    """A short, deterministic key (32 hex chars) for idempotency and client references.

    The parts are JSON-encoded before hashing so that ``("a|b", "c")`` and ``("a", "b|c")``
    never collide, whatever characters the parts contain.
    """
    if not parts:
        raise ValueError("artefact_key needs at least one part")
    encoded = json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:_ARTEFACT_KEY_LENGTH]
