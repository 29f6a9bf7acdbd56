"""Deterministic identifiers, so that re-running any flow never mints a second resource.

Every FHIR id we create is a UUID v5 of the business key that names the thing (connection,
resource kind, trust key). Pulling the same referral twice, or collecting the same session
twice, therefore produces the same ids, and upserts stay upserts.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid

#: Fixed namespace for every id ehr-bridge mints. It is ``uuid5(NAMESPACE_URL,
#: "https://fhir.ehr-bridge.dev")`` written out, so that a change to the base URL constant
#: can never silently re-key every stored resource.
EHR_BRIDGE_NAMESPACE = uuid.UUID("0425c4dd-1484-5fb3-874f-c427f371a3ae")

#: The shape of an id a trust gives us for an item we wrote (``WriteReceipt.trust_id``): 1 to
#: 128 letters, digits and ``. _ : / -``, starting with a letter or a digit. Wide enough for
#: the ids record systems use (``CN0000001``, a number, a UUID, FHIR's ``Type/id`` of up to
#: 64 + 1 + 64 characters, an HL7 control id) and closed, so an answer cannot make us store
#: or print free text (a name and surname, an address, an e-mail, a sentence), control
#: characters or markup as an id. A shape cannot tell one word or one number from an id.
TRUST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/\-]{0,127}")
TRUST_ID_SHAPE = "1 to 128 letters, digits and . _ : / -, starting with a letter or digit"

_NAMESPACE_BYTES = EHR_BRIDGE_NAMESPACE.bytes
_ARTEFACT_KEY_LENGTH = 32


def resource_id(connection: str, kind: str, key: str) -> str:
    """The FHIR id for ``kind`` known as ``key`` on ``connection``; stable across runs.

    The result is a lowercase UUID with dashes: it satisfies FHIR's ``id`` rule (letters,
    digits, '-' and '.', at most 64) and can be used as a ``urn:uuid:`` full URL.
    """
    if not (connection and kind and key):
        for name, part in (("connection", connection), ("kind", kind), ("key", key)):
            if not part:
                raise ValueError(f"resource_id: {name} must not be empty")
    return _uuid5_text(f"{connection}|{kind}|{key}")


def _uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(EHR_BRIDGE_NAMESPACE, name))`` without building a UUID object.

    The pull path mints two ids per referral, and the UUID object's construction and
    formatting were most of their cost. Tests compare this with ``uuid.uuid5``.
    """
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest[:16].hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def artefact_key(*parts: str) -> str:
    """A short, deterministic key (32 hex chars) for idempotency and client references.

    The parts are JSON-encoded before hashing so that ``("a|b", "c")`` and ``("a", "b|c")``
    never collide, whatever characters the parts contain.
    """
    if not parts:
        raise ValueError("artefact_key needs at least one part")
    encoded = json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:_ARTEFACT_KEY_LENGTH]


def is_trust_id(value: object) -> bool:
    """Whether ``value`` is an id of the trust's we may store and print (``TRUST_ID_PATTERN``)."""
    return isinstance(value, str) and TRUST_ID_PATTERN.fullmatch(value) is not None
