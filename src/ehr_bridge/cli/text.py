r"""Text from records, made safe to print on an operator's terminal.

Trust ids, file names and reasons come from outside. Printed raw, a control character or
an ANSI/OSC escape could rewrite the screen or plant a link, and a right-to-left override
could make ``SR0000123`` read as another id. ``printable`` shows every such character as a
visible ``\uXXXX`` instead, and ``markup_safe`` also stops rich from reading square
brackets in the data as markup.
"""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape

#: C0 and C1 controls, DEL, and the Unicode bidirectional controls and isolates
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(value: Any) -> str:
    r"""``value`` as text with every control or bidi character shown as ``\uXXXX``."""
    text = "" if value is None else str(value)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def markup_safe(value: Any) -> str:
    """``printable`` text that rich prints as it is (no markup read from the data)."""
    return escape(printable(value))
