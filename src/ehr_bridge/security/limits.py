"""Input limits: how much a peer may send us, and how deeply its JSON may nest.

Every inbound HTTP answer is read through ``read_limited`` (``SecureSession`` does it), so
a trust or platform that sends a huge or endlessly compressed body, or JSON nested deeply
enough to exhaust the parser's stack, is refused with a message that names the limit
instead of taking the process down. The same checks serve any other inbound text
(``loads_limited``).

A compressed body is inflated here with a bound on the output, never by urllib3, so a
"zip bomb" stops at the limit plus one byte.

A body is read chunk by chunk with a deadline check before each chunk (``check``; the
session passes its request's watch), so a peer that keeps sending cannot keep the read
going past the whole-request deadline; one that sends a byte a second inside a chunk is
stopped by the watchdog closing the socket (``ehr_bridge.retry.watched``).
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ehr_bridge.errors import TerminalError
from ehr_bridge.security.foreign_text import digest

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_JSON_DEPTH = 64
_CHUNK = 64 * 1024
#: a JSON string, unrolled (runs of plain bytes, then one escape): the alternation form
#: ``"(?:[^"\\]|\\.)*"`` keeps a backtracking frame per byte, over a gigabyte for a 9.5 MB string
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
_OPENERS = frozenset(b"[{")


class InputLimits(BaseModel):
    """The ``[connection.trust.limits]`` (or provider) table of a network adapter."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=1024**3)
    max_json_depth: int = Field(default=DEFAULT_MAX_JSON_DEPTH, ge=8, le=512)


class InputLimitError(TerminalError):
    """An inbound body broke a limit; retrying the same request would only get it again."""

    code = "input_limit"


class RawBody(Protocol):
    """What ``read_limited`` needs of urllib3's ``HTTPResponse``."""

    def read(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        """Up to ``amt`` bytes, as sent (``decode_content=False``)."""
        ...


def json_depth(data: bytes) -> int:
    """How deeply the arrays and objects in ``data`` nest (0 for a scalar or non-JSON).

    Strings are removed first, so brackets inside them do not count; a bracket that is
    never closed still counts, so truncated JSON cannot hide its depth.
    """
    depth = deepest = 0
    for match in _BRACKETS.finditer(_JSON_STRING.sub(b'""', data)):
        if match.group()[0] in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(depth - 1, 0)
    return deepest


def check_body(data: bytes, limits: InputLimits, what: str) -> None:
    """Refuse a body over the size limit, or JSON nested deeper than the depth limit."""
    if len(data) > limits.max_body_bytes:
        raise InputLimitError(f"{what}: body larger than {limits.max_body_bytes} bytes")
    if data.lstrip()[:1] in (b"[", b"{") and json_depth(data) > limits.max_json_depth:
        raise InputLimitError(f"{what}: JSON nested deeper than {limits.max_json_depth} levels")


def loads_limited(data: bytes | str, limits: InputLimits, what: str) -> Any:
    """JSON from untrusted text, after the size and depth checks.

    Raises:
        InputLimitError: too large or too deep.
        ValueError: not JSON (including NaN and Infinity, which JSON does not have).
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    check_body(raw, limits, what)
    return json.loads(raw, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> None:
    raise ValueError("non-standard JSON constant")


def read_limited(
    raw: RawBody,
    headers: Any,
    limits: InputLimits,
    what: str,
    *,
    check: Callable[[], None] | None = None,
) -> bytes:
    """Read a whole HTTP body, refusing it past ``max_body_bytes`` (declared, sent or inflated).

    ``headers`` is the response's case-insensitive header mapping; ``check`` runs before
    every chunk and raises when the request's deadline has passed.
    """
    declared = str(headers.get("Content-Length", "")).strip()
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise InputLimitError(f"{what}: body larger than {limits.max_body_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        if check is not None:
            check()
        chunk = raw.read(_CHUNK, decode_content=False)
        if not chunk:
            break
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise InputLimitError(f"{what}: body larger than {limits.max_body_bytes} bytes")
        chunks.append(chunk)
    body = _inflate(b"".join(chunks), str(headers.get("Content-Encoding", "")), limits, what)
    check_body(body, limits, what)
    return body


def _inflate(data: bytes, encoding: str, limits: InputLimits, what: str) -> bytes:
    """Undo gzip or deflate with a bound on the output; refuse other encodings."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return data
    if name not in ("gzip", "x-gzip", "deflate"):
        # the header is foreign text: named by a digest only, never repeated
        raise InputLimitError(f"{what}: content encoding #{digest(name)} is not accepted")
    wbits = zlib.MAX_WBITS | 16 if "gzip" in name else zlib.MAX_WBITS
    try:
        return _bounded(zlib.decompressobj(wbits), data, limits, what)
    except zlib.error:
        if name != "deflate":
            raise InputLimitError(f"{what}: body is not valid {name}") from None
    try:  # some servers send raw deflate without the zlib header
        return _bounded(zlib.decompressobj(-zlib.MAX_WBITS), data, limits, what)
    except zlib.error:
        raise InputLimitError(f"{what}: body is not valid deflate") from None


def _bounded(inflater: Any, data: bytes, limits: InputLimits, what: str) -> bytes:
    out: bytes = inflater.decompress(data, limits.max_body_bytes + 1)
    if len(out) > limits.max_body_bytes or inflater.unconsumed_tail:
        raise InputLimitError(f"{what}: body inflates past {limits.max_body_bytes} bytes")
    return out
