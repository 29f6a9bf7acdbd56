r"""ER7, the pipe-and-hat text form of HL7 v2: bytes, delimiters, segments, escaping.

This is the small, fast layer both directions share. Reading follows HL7 v2.5.1 ch. 2:

- **Bytes** are text in the character set MSH-18 declares (HL7 table 0211: ``ASCII``,
  ``8859/1``..``8859/9``, ``8859/15``, ``UNICODE UTF-8``; ``UNICODE`` and ``UTF-8`` as
  feeds write it). Nothing declared is read as UTF-8. Bytes that are not text in that set
  are refused naming MSH-18, so a Latin-1 name is never read as mojibake: a BOM or valid
  UTF-8 in a message declaring 8859/n is refused too (mislabelled, not Latin text).
- **Segments** end with CR (LF and CRLF are accepted); a UTF-8 byte-order mark and MLLP
  framing bytes at the frame edges are ignored; a file may hold several messages (a
  batch, with or without its FHS/BHS/BTS/FTS envelope). Every other line must be a
  segment: a three-character id (``[A-Z][A-Z0-9]{2}``) followed by the field separator
  or the end of the line. Anything else (the tail of a field cut by a raw CR, ``PIDX|``)
  is refused naming ``line N`` of its message, never cut off or taken as a segment.
- **Control characters** (C0 but TAB, DEL, C1) are not text in any HL7 data type: one
  found in a field is refused naming the field (``PID-5``).

Writing, ``escape`` turns every delimiter in a value into its escape sequence, so text we
build (names, note lines, titles) can never open a new field, component or segment.
Only the five standard sequences (``\F\ \S\ \T\ \R\ \E\``) are written: they are the
ones every receiver and hl7apy (which builds our outbound messages) read back unchanged.
Line breaks are never escaped into a value: the builders turn them into repetitions
(``TX`` note lines) or spaces (single-line fields), so no receiver sees a raw CR.

Every refusal is an :class:`Er7Error` whose ``where`` names the place (``MSH-18``,
``MSH-2``, ``line 4``, ``PID-5``) and whose reason names positions only, never a value.
"""

from __future__ import annotations

import codecs
import functools
import re
from dataclasses import dataclass

BOM = "\ufeff"
MLLP_START = "\x0b"
MLLP_END = "\x1c"
BATCH_SEGMENTS = frozenset({"FHS", "FTS", "BHS", "BTS"})

#: MSH-18 (first repetition, upper case) -> the codec that reads it
CHARSETS = {
    "ASCII": "ascii",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",  # table 0211's old name for ISO/IEC 10646; UTF-8 is what feeds mean
    "UTF-8": "utf-8",  # not in table 0211, but written by some engines
    **{f"8859/{part}": f"iso8859_{part}" for part in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15)},
}
_HEADER = re.compile(rb"(?:^|[\r\n\x0b])[ \t]*(MSH[^\r\n]*)")
#: MLLP framing: VT before a frame, FS (then CR) after it; elsewhere they are control bytes
_FRAMING = re.compile(r"(?:^|(?<=[\r\n\x1c]))\x0b|\x1c(?=[\r\n\x0b]|\Z)")
#: C0 controls but TAB (CR ends a segment; LF was made CR), DEL and the C1 controls
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")


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


# --- bytes -------------------------------------------------------------------------------
def decode_bytes(data: bytes) -> str:
    """Bytes as text in the character set MSH-18 declares (UTF-8 when it declares none).

    ASCII bytes read the same in every set we know, so they are taken as they are (the
    common case: one C-level check). Only other text needs the header, and the first
    MSH's MSH-18 governs the file.

    Raises:
        Er7Error: ``MSH-18`` when the bytes are not text in the declared set, ``MSH-2``
            when the header's delimiters cannot be read to find MSH-18.
    """
    bom = data.startswith(codecs.BOM_UTF8)
    body = data[3:] if bom else data
    if body.isascii():
        return body.decode("ascii")
    declared = charset(body)
    codec = CHARSETS.get(declared) if declared else "utf-8"
    if codec is None:
        raise Er7Error(
            "MSH-18", "text is not ASCII and MSH-18 declares a character set not read here"
        )
    if codec == "ascii":
        raise Er7Error("MSH-18", "text is not ASCII, the character set MSH-18 declares")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        if codec == "utf-8":
            said = "the character set declared" if declared else "MSH-18 declares none"
            raise Er7Error("MSH-18", f"text is not UTF-8 ({said})") from None
        return _latin(body, codec, bom=bom)
    if codec != "utf-8":  # Latin text is never valid UTF-8 by chance: the label is wrong
        raise Er7Error("MSH-18", "text is UTF-8 but MSH-18 declares ISO 8859")
    return text


def _latin(body: bytes, codec: str, *, bom: bool) -> str:
    """Text declared ISO 8859 that is not UTF-8."""
    if bom:
        raise Er7Error("MSH-18", "a UTF-8 byte-order mark but MSH-18 declares ISO 8859")
    try:
        return body.decode(codec)
    except UnicodeDecodeError:  # parts 3, 6, 7 and 8 leave some bytes undefined
        raise Er7Error("MSH-18", "text is not the ISO 8859 part MSH-18 declares") from None


def charset(data: bytes) -> str:
    """MSH-18 of the first MSH in ``data`` (first repetition, upper case), or ``""``.

    Raises:
        Er7Error: the header declares no usable delimiters (names MSH-2).
    """
    found = _HEADER.search(data)
    if found is None:
        return ""
    msh = found[1].decode("latin-1")  # delimiters are ASCII: positions are the same
    d = delimiters(msh)
    parts = msh.split(d.field, 18)
    if len(parts) < 18:
        return ""
    return parts[17].split(d.repetition, 1)[0].strip(" ").upper()


# --- segments ----------------------------------------------------------------------------
def normalise(text: str) -> str:
    """One message or batch with CR segment ends, no BOM and no MLLP framing at frame edges.

    A VT or FS inside a line is not framing: it stays, and ``split_messages`` refuses it.
    """
    if text.startswith(BOM):
        text = text[1:]
    if MLLP_START in text or MLLP_END in text:
        text = _FRAMING.sub("", text)
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    return text


def split_messages(text: str) -> list[list[str]]:
    """The messages in ``text``, each a list of segment strings starting with MSH.

    Blank lines and batch envelope segments (FHS, BHS, BTS, FTS) are dropped. Text before
    the first MSH is refused, since it cannot belong to any message; so is a line that is
    not a segment, and a control character in a field.

    Raises:
        Er7Error: naming ``MSH``, ``MSH-2``, ``line N`` (of its message) or the field.
    """
    text = normalise(text)
    controls = has_controls(text)  # one scan; the field is worked out only on a hit
    messages: list[list[str]] = []
    current: list[str] = []
    field, line = "|", 0
    for segment in text.split("\r"):
        line += 1
        segment = segment.strip(" \t")
        if not segment:
            continue
        head = segment[:3]
        if head == "MSH":  # MSH-1, the field separator, follows the id
            field, line, current = segment[3:4], 1, [segment]
            messages.append(current)
        elif head in BATCH_SEGMENTS:
            continue  # the envelope: its own separators, and nothing the mapping reads
        elif not messages:
            raise Er7Error("MSH", "the text does not start with an MSH segment")
        elif segment[3:4] not in (field, "") or (head not in _IDS and not _segment_id(head)):
            raise _refused(current[0], f"line {line}", _NOT_A_SEGMENT, len(messages))
        else:
            current.append(segment)
        if controls:
            _refuse_controls(current[0], segment, len(messages))
    if not messages:
        raise Er7Error("MSH", "no MSH segment found")
    return messages


_NOT_A_SEGMENT = "not a segment: no segment id and field separator"
_CONTROL_CHARACTER = "a control character, which no HL7 text type allows"


def _refused(msh: str, where: str, reason: str, message: int) -> Er7Error:
    """The error for a place in a message; an unusable MSH-2 is named first (it is the cause)."""
    delimiters(msh)
    return Er7Error(where, reason + in_batch(message))


def has_controls(text: str) -> bool:
    """Whether ``text`` holds a control character (CR and LF, the segment ends, do not count)."""
    if text.isascii():  # str knows this; then a byte table is faster than the regex
        return bool(text.encode("ascii").translate(None, _ASCII_TEXT))
    return _CONTROL.search(text) is not None


#: ASCII that is text or a segment end (any other byte is a control character)
_ASCII_TEXT = bytes(range(0x20, 0x7F)) + b"\t\r\n"
#: segment ids seen valid, so a feed's few ids are checked by the regex once each
_IDS: set[str] = set()


def _segment_id(head: str) -> bool:
    """Whether ``head`` is a segment id (three characters: a letter, two letters or digits)."""
    if _SEGMENT_ID.fullmatch(head) is None:
        return False
    _IDS.add(head)  # at most 26 * 36 * 36 entries, however hostile the input
    return True


def _refuse_controls(msh: str, segment: str, message: int) -> None:
    hit = _CONTROL.search(segment)
    if hit is None:
        return
    field = msh[3:4] or "|"
    head, number = segment[:3], segment.count(field, 0, hit.start())
    where = f"MSH-{number + 1}" if head == "MSH" else f"{head}-{number}"  # MSH-1: the separator
    raise _refused(msh, where, _CONTROL_CHARACTER, message)


def in_batch(message: int) -> str:
    """Where in a batch: empty for the first (or only) message."""
    return f" (message {message} of the batch)" if message > 1 else ""


# --- delimiters --------------------------------------------------------------------------
def delimiters(msh: str) -> Delimiters:
    """The delimiters MSH-1 and MSH-2 declare; refuses a header that declares none."""
    if len(msh) < 8 or not msh.startswith("MSH"):
        raise Er7Error("MSH-2", "header too short to declare its encoding characters")
    end = msh.find(msh[3], 4)
    declared = msh[3:end] if end != -1 else msh[3:]
    if len(declared) > _LONGEST_DECLARATION:  # refused below; kept out of the cache
        return _declared(declared)
    return _cached_declared(declared)


#: MSH-1 plus MSH-2 at its longest (v2.7 adds a fifth character, the truncation character)
_LONGEST_DECLARATION = 6


def _declared(declared: str) -> Delimiters:
    """MSH-1 followed by MSH-2's encoding characters, checked."""
    field, chars = declared[0], declared[1:]
    if len(chars) < 3 or len(chars) > 5:
        raise Er7Error("MSH-2", "encoding characters missing or more than five")
    if not all(c.isprintable() and not c.isspace() and not c.isalnum() for c in declared):
        raise Er7Error("MSH-2", "encoding characters not punctuation")
    if len(set(declared)) != len(declared):
        raise Er7Error("MSH-2", "encoding characters repeat a delimiter")
    subcomponent = chars[3] if len(chars) > 3 else "&"
    if len(chars) == 3 and subcomponent in declared:
        raise Er7Error("MSH-2", "encoding characters repeat a delimiter")
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
    r"""``value`` with HL7 escape sequences decoded (v2.5.1 ch. 2.7, formatted text 2A.31).

    - ``\F\ \S\ \T\ \R\ \E\`` become their delimiters.
    - Line breaks: ``\.br\`` and ``\.ce\`` (end the line; centre the next) give one,
      ``\.sp\`` one and ``\.sp<n>\`` n (at most ``MAX_SPACED_LINES``); ``\X0D\`` and
      ``\X0A\`` are the raw line-end bytes.
    - Other ``\Xhh..\`` hex runs become those bytes (UTF-8, else Latin-1).
    - Layout without text is dropped: ``\.in..\ \.ti..\ \.sk..\ \.fi\ \.nf\``,
      highlighting ``\H\ \N\``, character-set switches ``\C..\ \M..\`` and local
      ``\Z..\`` sequences.

    An unterminated escape character is kept as text rather than lost.
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


#: ``\.sp<n>\`` gives n line breaks, at most this many (a hostile n cannot blow up a value)
MAX_SPACED_LINES = 10
_SPACE = re.compile(r"\.sp *\+?([0-9]*)")


def _sequence(body: str, d: Delimiters) -> str:
    simple = _simple(d)
    if body in simple:
        return simple[body]
    if body[:1] == "X" and len(body) % 2 == 1 and _HEX.fullmatch(body[1:]):
        raw = bytes.fromhex(body[1:])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    spaced = _SPACE.fullmatch(body)
    if spaced is not None:
        digits = spaced[1].lstrip("0")
        lines = int(digits) if 0 < len(digits) <= 2 else MAX_SPACED_LINES if digits else 1
        return "\n" * min(lines, MAX_SPACED_LINES)
    return ""  # layout, highlighting and character-set switches carry no text


@functools.lru_cache(maxsize=64)
def _simple(d: Delimiters) -> dict[str, str]:
    """The sequences that stand for one fixed text, for these delimiters."""
    return {
        "F": d.field,
        "S": d.component,
        "T": d.subcomponent,
        "R": d.repetition,
        "E": d.escape,
        ".br": "\n",
        ".ce": "\n",
    }


def segment(segment_id: str, fields: list[str], d: Delimiters = DEFAULT) -> str:
    """One segment from already-escaped field texts (field 1 first), trailing empties cut."""
    while fields and not fields[-1]:
        fields = fields[:-1]
    return d.field.join([segment_id, *fields])


def header(fields: list[str], d: Delimiters = DEFAULT) -> str:
    """An MSH segment: ``fields`` start at MSH-3 (MSH-1 and MSH-2 come from ``d``)."""
    return segment("MSH", [d.encoding_characters, *fields], d)
