r"""ER7, the pipe-and-hat text form of HL7 v2: delimiters, line endings, escaping.

This is the small, fast layer both directions share. Reading, real files end segments with
CR, LF or CRLF, may start with a UTF-8 byte-order mark, may keep MLLP framing bytes, and
may hold several messages (a batch file); ``split_messages`` copes with all of that.
Writing, ``escape`` turns every delimiter in a value into its escape sequence, so text we
build (names, note lines, titles) can never open a new field, component or segment.

Only the five standard sequences (``\F\ \S\ \T\ \R\ \E\``) are written: they are the
ones every receiver and hl7apy (which builds our outbound messages) read back unchanged.
Line breaks are never escaped into a value: the builders turn them into repetitions
(``TX`` note lines) or spaces (single-line fields), so no receiver sees a raw CR.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

BOM = "\ufeff"
MLLP_START = "\x0b"
MLLP_END = "\x1c"
BATCH_SEGMENTS = frozenset({"FHS", "FTS", "BHS", "BTS"})
_LATIN1_MARKERS = (b"8859/1", b"8859/15")


@dataclass(frozen=True)
class Delimiters:
    """The separators a message declares in MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as written in a message header."""
        return self.component + self.repetition + self.escape + self.subcomponent


DEFAULT = Delimiters()


class Er7Error(ValueError):
    """The text is not an HL7 v2 message; ``where`` names the segment and field."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def decode_bytes(data: bytes) -> str:
    """Bytes as text: UTF-8 (a BOM allowed), or Latin-1 when MSH-18 declares 8859/1."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        header = data.split(b"\r", 1)[0].split(b"\n", 1)[0]
        if any(marker in header for marker in _LATIN1_MARKERS):
            return data.decode("latin-1")
        raise Er7Error("MSH-18", "text is not UTF-8 and the header declares no 8859/1") from None


def normalise(text: str) -> str:
    """One message or batch with CR segment ends, no BOM and no MLLP framing bytes."""
    if text.startswith(BOM):
        text = text[1:]
    if MLLP_START in text or MLLP_END in text:
        text = text.replace(MLLP_START, "").replace(MLLP_END, "")
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    return text


def split_messages(text: str) -> list[list[str]]:
    """The messages in ``text``, each a list of segment strings starting with MSH.

    Blank lines and batch envelope segments (FHS, BHS, BTS, FTS) are dropped. Text before
    the first MSH is refused, since it cannot belong to any message.
    """
    messages: list[list[str]] = []
    for segment in normalise(text).split("\r"):
        segment = segment.strip(" \t")
        if not segment or segment[:3] in BATCH_SEGMENTS:
            continue
        if segment.startswith("MSH"):
            messages.append([segment])
        elif messages:
            messages[-1].append(segment)
        else:
            raise Er7Error("MSH", "the text does not start with an MSH segment")
    if not messages:
        raise Er7Error("MSH", "no MSH segment found")
    return messages


def delimiters(msh: str) -> Delimiters:
    """The delimiters MSH-1 and MSH-2 declare; refuses a header that declares none."""
    if len(msh) < 8 or not msh.startswith("MSH"):
        raise Er7Error("MSH-2", "header too short to declare its encoding characters")
    end = msh.find(msh[3], 4)
    declared = msh[3:end] if end != -1 else msh[3:]
    if len(declared) > _LONGEST_DECLARATION:  # refused below; kept out of the cache
        return _declared(declared)
    return _cached_declared(declared)


#: MSH-1 plus MSH-2 as long as any real header writes them (v2.7 adds a fifth character)
_LONGEST_DECLARATION = 8


def _declared(declared: str) -> Delimiters:
    """MSH-1 followed by MSH-2's encoding characters, checked."""
    field, chars = declared[0], declared[1:]
    if len(chars) < 3 or field.isalnum() or any(c.isalnum() for c in chars):
        raise Er7Error("MSH-2", "encoding characters missing or not punctuation")
    if len(set(field + chars[:4])) != len(field + chars[:4]):
        raise Er7Error("MSH-2", "encoding characters repeat a delimiter")
    subcomponent = chars[3] if len(chars) > 3 else "&"
    return Delimiters(field, chars[0], chars[1], chars[2], subcomponent)


#: every message of a feed declares the same delimiters: check them once
_cached_declared = functools.lru_cache(maxsize=64)(_declared)


# --- escaping ----------------------------------------------------------------------------
_HEX = re.compile(r"[0-9A-Fa-f]+")


def escape(value: str, d: Delimiters = DEFAULT) -> str:
    """``value`` with every delimiter replaced by its escape sequence (escape char first).

    CR and LF are replaced by a space: a single-line HL7 field cannot hold a line break,
    and a raw CR would end the segment. Callers with multi-line text split it into
    repetitions first (see ``escape_lines``).
    """
    e = d.escape
    text = value.replace(e, f"{e}E{e}")
    text = text.replace(d.field, f"{e}F{e}").replace(d.component, f"{e}S{e}")
    text = text.replace(d.subcomponent, f"{e}T{e}").replace(d.repetition, f"{e}R{e}")
    if "\r" in text or "\n" in text:
        text = text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return text


def escape_lines(text: str, d: Delimiters = DEFAULT) -> list[str]:
    """Multi-line text as escaped lines, one per repetition of a ``TX`` field."""
    return [escape(line, d) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]


def unescape(value: str, d: Delimiters = DEFAULT) -> str:
    r"""``value`` with HL7 escape sequences decoded.

    ``\F\ \S\ \T\ \R\ \E\`` become their delimiters, ``\.br\`` and ``\X0D\``/``\X0A\``
    become line breaks, other ``\Xhh\`` hex runs become those bytes (UTF-8, else
    Latin-1), and formatting sequences (``\H\``, ``\N\``, ``\.sp\``...) are dropped. An
    unterminated escape character is kept as text rather than lost.
    """
    e = d.escape
    if e not in value:
        return value
    out: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        end = value.find(e, i + 1) if char == e else -1
        if end == -1:
            out.append(char)
            i += 1
            continue
        out.append(_sequence(value[i + 1 : end], d))
        i = end + 1
    return "".join(out)


def _sequence(body: str, d: Delimiters) -> str:
    simple = {
        "F": d.field,
        "S": d.component,
        "T": d.subcomponent,
        "R": d.repetition,
        "E": d.escape,
        ".br": "\n",
    }
    if body in simple:
        return simple[body]
    if body[:1] == "X" and len(body) % 2 == 1 and _HEX.fullmatch(body[1:]):
        raw = bytes.fromhex(body[1:])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    return ""  # highlighting, formatting and character-set switches carry no text


def segment(segment_id: str, fields: list[str], d: Delimiters = DEFAULT) -> str:
    """One segment from already-escaped field texts (field 1 first), trailing empties cut."""
    while fields and not fields[-1]:
        fields = fields[:-1]
    return d.field.join([segment_id, *fields])


def header(fields: list[str], d: Delimiters = DEFAULT) -> str:
    """An MSH segment: ``fields`` start at MSH-3 (MSH-1 and MSH-2 come from ``d``)."""
    return segment("MSH", [d.encoding_characters, *fields], d)
