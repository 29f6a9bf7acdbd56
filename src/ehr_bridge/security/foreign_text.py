"""Foreign text is data, not message: what an adapter may keep of another system's error.

An error answer from a trust or a provider (an HTTP body, an HL7 ACK's MSA-3 and ERR, a
FHIR MessageHeader response, a ``Retry-After`` header) is written by someone else, and
record systems routinely quote the record they refuse: a name, an NHS number, a date of
birth. None of it is stored, logged or printed. Each adapter reduces the answer here, at
its boundary, with ``reduce_reply``, to:

- the **status** (``HTTP 422``, ``peer answered AE``): our own words;
- a **code**, only when it is one of a closed list (``ERROR_CODES`` for REST APIs, HL7
  table 0357, FHIR's IssueType), compared without regard to case;
- a **field path**, only when each of its steps is a key (or an index) of what we sent,
  so it is made of our own schema's names, never of the trust's values;
- a short **hash** of the whole foreign text, so support can tell two identical answers
  from two different ones without anyone reading either.

::

    trust:  422 {"error": "<name> <NHS number> already discharged",
                 "field": "text[<date of birth>]"}
    before: POST /referrals/{id}/clinical-notes: HTTP 422 <name> <NHS number> already
            discharged (field text[<date of birth>])
    after:  POST /referrals/{id}/clinical-notes: HTTP 422 reply #ceb5aa23

    trust:  422 {"error": "validation", "message": "<name> ...", "field": "status"}
    after:  POST /referrals/{id}/clinical-notes: HTTP 422 validation (field status) reply #3878a370

The hash is a plain SHA-256 prefix, like the record hashes: it links equal texts, it is not
meant to keep a guessable text secret. Exception strings of HTTP and socket libraries are
reduced to the exception's type (``exception_name``), and ``Retry-After`` to a bounded
number of seconds (``retry_after_seconds``). This module imports nothing of ours, so any
layer may use it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

#: error codes REST record systems answer with (IAPTUS-style and PC-MIS among them)
ERROR_CODES = frozenset(
    {
        "already_discharged",
        "already_exists",
        "bad_request",
        "conflict",
        "duplicate",
        "duplicate_external_ref",
        "forbidden",
        "gone",
        "internal",
        "internal_error",
        "invalid",
        "invalid_field",
        "invalid_request",
        "locked",
        "malformed_json",
        "method_not_allowed",
        "missing_field",
        "not_found",
        "not_updatable",
        "payload_too_large",
        "precondition_failed",
        "rate_limited",
        "required",
        "server_error",
        "service_unavailable",
        "throttled",
        "timeout",
        "too_large",
        "too_many_requests",
        "unauthorised",
        "unauthorized",
        "unavailable",
        "unprocessable_entity",
        "validation",
        "validation_error",
    }
)
#: the longest ``Retry-After`` honoured: a larger one would park a row for years
MAX_RETRY_AFTER_SECONDS = 3600.0
DIGEST_HEX_DIGITS = 8

_CODE_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,47}")
_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]{0,63})|\[([0-9]{1,4})\]")
_MAX_PATH = 256
_DIGEST_DOMAIN = b"ehr-bridge foreign text\0"
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}(\.[0-9]{1,3})?")


@dataclass(frozen=True)
class Reply:
    """The safe parts of a foreign error answer; ``str()`` gives the usual wording."""

    status: str
    code: str | None = None
    field: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """`` reply #<hash>`` (empty when the answer had no text)."""
        return f" reply #{self.digest}" if self.digest else ""

    def __str__(self) -> str:
        text = self.status + (f" {self.code}" if self.code else "")
        return text + (f" (field {self.field})" if self.field else "") + self.reference


def reduce_reply(
    status: str,
    text: bytes | str | None,
    *,
    code: object = None,
    codes: Collection[str] = ERROR_CODES,
    field: object = None,
    sent: object = None,
) -> Reply:
    """The one way a foreign error answer becomes part of one of our messages.

    Args:
        status: our wording of what happened (``HTTP 422``); never foreign text.
        text: the whole foreign answer (body bytes, ACK segments); only its hash is kept.
        code: the error code the answer names; kept if it is in ``codes``.
        codes: the closed list of codes this kind of answer may carry (lower case).
        field: the field path the answer names; kept if ``sent`` has it (``known_field``).
        sent: what we sent: a JSON document, or a collection of the paths it has.
    """
    return Reply(status, known_code(code, codes), known_field(field, sent), digest(text))


def known_code(value: object, codes: Collection[str]) -> str | None:
    """``value`` if it is one of ``codes`` (ignoring case and ``-``/``_``), else None."""
    if not isinstance(value, str) or not _CODE_SHAPE.fullmatch(value):
        return None
    folded = value.lower()
    if folded in codes or folded.replace("-", "_") in codes:
        return value
    return None


def known_field(path: object, sent: object) -> str | None:
    """``path`` (``a.b[0]``, ``$.a.b``, ``/a/b/0``, ``Observation.status``) if ``sent`` has it.

    ``sent`` is the JSON we sent, walked step by step (a FHIR path may start with the
    resource type, and ``value`` finds ``valueQuantity``); or, for protocols without JSON
    (HL7 v2 ``PID-5``), a collection of every path the message had. The answer is rebuilt
    from the steps, so it holds only our own names and small indexes.
    """
    if not isinstance(path, str) or not path or len(path) > _MAX_PATH or sent is None:
        return None
    if isinstance(sent, Collection) and not isinstance(sent, Mapping | list | str | bytes):
        return path if path in sent else None
    steps = _steps(path)
    if not steps:
        return None
    for document in _documents(sent, steps[0]):
        walked = _walk(document, steps)
        if walked is not None:
            return walked
    return None


def digest(text: bytes | str | None) -> str | None:
    """A short SHA-256 of the foreign text, to correlate equal answers (None if empty)."""
    if not text:
        return None
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return hashlib.sha256(_DIGEST_DOMAIN + data).hexdigest()[:DIGEST_HEX_DIGITS]


def exception_name(exc: BaseException) -> str:
    """A library exception by its type alone: its text may quote a URL, a host or a value."""
    return type(exc).__name__


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` of delta-seconds, at most ``MAX_RETRY_AFTER_SECONDS``; else None."""
    if value is None or not _DELTA_SECONDS.fullmatch(value.strip()):
        return None
    seconds = float(value)
    return min(seconds, MAX_RETRY_AFTER_SECONDS) if math.isfinite(seconds) else None


def _steps(path: str) -> list[str | int]:
    """A path as names and indexes; empty when it is not one of the shapes we read."""
    if path.startswith("/"):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
        return [int(p) if p.isascii() and p.isdigit() and len(p) <= 4 else p for p in parts]
    text = path[2:] if path.startswith("$.") else path
    steps: list[str | int] = []
    position = 0
    while position < len(text):
        match = _STEP.match(text, position)
        if match is None or (position == 0 and text.startswith(".")):
            return []
        name, index = match.groups()
        steps.append(name if name is not None else int(index))
        position = match.end()
    return steps


def _documents(sent: object, first: str | int) -> Iterator[tuple[Any, bool]]:
    """Where a path may start: the document, and each resource a Bundle carries."""
    yield sent, False
    if not isinstance(sent, dict) or not isinstance(first, str):
        return
    if sent.get("resourceType") == first:
        yield sent, True
    entries = sent.get("entry") if sent.get("resourceType") == "Bundle" else None
    for entry in entries if isinstance(entries, list) else []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == first:
            yield resource, True


def _walk(start: tuple[Any, bool], steps: list[str | int]) -> str | None:
    node, typed = start
    rendered = [str(steps[0])] if typed else []
    for step in steps[1:] if typed else steps:
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                return None
            node = node[step]
            rendered.append(f"[{step}]")
            continue
        if not isinstance(node, dict):
            return None
        key = step if step in node else _choice(node, step)
        if key is None:
            return None
        node = node[key]
        rendered.append(("." if rendered else "") + step)
    return "".join(rendered) or None


def _choice(node: dict[str, Any], name: str) -> str | None:
    """A FHIR choice element: ``value`` names ``valueQuantity``, ``valueString``..."""
    for key in node:
        rest = key[len(name) :] if isinstance(key, str) and key.startswith(name) else ""
        if rest[:1].isascii() and rest[:1].isupper():
            return str(key)
    return None
