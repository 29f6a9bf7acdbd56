"""Tables that stay readable at 80 columns without cutting an id.

Each table says what each column is:

- **whole** (the default): ids, kinds, states, actions, times, counts. Printed whole on
  one line, never wrapped and never cut with an ellipsis.
- **text** (``wrap=N``): reasons, errors, details. Wrapped at word boundaries to at most
  N lines; what is left is cut at a word boundary with ``…``.
- **optional** (``drop=N``): when the table would not fit, optional columns are left out,
  the highest ``drop`` first, and a line under the table names them.

If the columns that are never left out still do not fit, each row is printed as a small
record (``header: value`` lines) instead, so nothing is cut even then. ``--wide`` prints
every column whole and unwrapped. Values from records go through ``text.printable``
and are shown as plain text: no control character, escape or rich markup gets through.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ehr_bridge.cli.screen import is_wide
from ehr_bridge.cli.text import printable

#: columns are two spaces apart
GAP = 2
ELLIPSIS = "…"


@dataclass(frozen=True)
class Column:
    """One column: its header, whether it may be left out, whether its text wraps."""

    header: str
    #: 0: always shown; otherwise left out (highest first) when the table would not fit
    drop: int = 0
    #: 0: printed whole on one line; N: wrapped to at most N lines, then cut with an ellipsis
    wrap: int = 0
    #: the narrowest a wrapping column is made before optional columns are left out
    min_width: int = 16
    justify: Literal["left", "right"] = "left"


def text(header: str, lines: int = 3, *, drop: int = 0, min_width: int = 16) -> Column:
    """A column of prose (reasons, errors) wrapped to at most ``lines`` lines."""
    return Column(header, drop=drop, wrap=lines, min_width=min_width)


def optional(header: str, drop: int) -> Column:
    """A column of whole values that may be left out at narrow widths."""
    return Column(header, drop=drop)


@dataclass(frozen=True)
class Layout:
    """Which columns are shown, each one's width, and which were left out."""

    shown: list[int]
    widths: list[int]
    dropped: list[str]


def print_table(
    console: Console,
    title: str | None,
    columns: Sequence[str | Column],
    rows: Sequence[Sequence[Any]],
    *,
    indent: int = 0,
) -> None:
    """Print ``rows`` under ``title`` laid out for the console's width (see the module)."""
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    cells = [[printable(v) for v in row] for row in rows]
    width = max(console.width - indent, 20)
    if title:
        console.print(Text(title), highlight=False)
    if not cells:
        console.print(Text(f"{' ' * indent}(none)"), highlight=False)
        return
    if is_wide(console):
        _print_wide(console, cols, cells, indent)
        return
    layout = plan(cols, cells, width)
    if layout is None:
        _print_records(console, cols, cells, width, indent)
        return
    table = _table([cols[i] for i in layout.shown], layout.widths)
    for row in cells:
        table.add_row(
            *(_cell(row[i], cols[i], w) for i, w in zip(layout.shown, layout.widths, strict=True))
        )
    console.print(Padding(table, (0, 0, 0, indent), expand=False) if indent else table)
    if layout.dropped:
        left_out = ", ".join(layout.dropped)
        note = f"{' ' * indent}(not shown at {console.width} columns: {left_out}; see --wide)"
        console.print(Text(note), highlight=False)


def plan(columns: Sequence[Column], cells: Sequence[Sequence[str]], width: int) -> Layout | None:
    """The columns to show and their widths within ``width``; None if even the needed don't fit."""
    natural = [_natural(c, [row[i] for row in cells]) for i, c in enumerate(columns)]
    least = [
        min(n, max(c.min_width, cell_len(c.header))) if c.wrap else n
        for c, n in zip(columns, natural, strict=True)
    ]
    shown = list(range(len(columns)))
    while sum(least[i] for i in shown) + GAP * (len(shown) - 1) > width:
        optional_columns = [i for i in shown if columns[i].drop]
        if not optional_columns:
            return None
        shown.remove(max(optional_columns, key=lambda i: (columns[i].drop, i)))
    widths = {i: least[i] for i in shown}
    spare = width - sum(widths.values()) - GAP * (len(shown) - 1)
    growing = [i for i in shown if columns[i].wrap and widths[i] < natural[i]]
    while spare > 0 and growing:
        for i in list(growing):
            if spare == 0:
                break
            widths[i] += 1
            spare -= 1
            if widths[i] >= natural[i]:
                growing.remove(i)
    dropped = [columns[i].header for i in range(len(columns)) if i not in shown]
    return Layout(shown, [widths[i] for i in shown], dropped)


def clip(value: str, width: int, lines: int) -> list[str]:
    """``value`` wrapped at word boundaries to ``width``, at most ``lines`` lines.

    A word longer than the width is broken (there is no other way to show it); text past
    the last line is cut at a word boundary and marked with an ellipsis.
    """
    wrapped = textwrap.wrap(value, width, break_on_hyphens=False) or [""]
    if lines <= 0 or len(wrapped) <= lines:
        return wrapped
    kept = wrapped[:lines]
    last = kept[-1]
    while cell_len(last) + 1 > width:
        cut = last.rsplit(" ", 1)[0] if " " in last else last[: width - 1]
        last = cut.rstrip()
    kept[-1] = last.rstrip(" ,;:") + ELLIPSIS
    return kept


def _natural(column: Column, values: Sequence[str]) -> int:
    longest = max((cell_len(line) for v in values for line in (v.splitlines() or [""])), default=0)
    return max(longest, cell_len(column.header))


def _table(columns: Sequence[Column], widths: Sequence[int]) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 0, 0, GAP - 1),
        header_style="bold",
    )
    for column, width in zip(columns, widths, strict=True):
        table.add_column(
            column.header, width=width, no_wrap=True, overflow="fold", justify=column.justify
        )
    return table


def _cell(value: str, column: Column, width: int) -> Text:
    if not column.wrap:
        return Text(value)
    return Text("\n".join(clip(value, width, column.wrap)))


def _print_wide(
    console: Console, columns: Sequence[Column], cells: Sequence[Sequence[str]], indent: int
) -> None:
    widths = [_natural(c, [row[i] for row in cells]) for i, c in enumerate(columns)]
    table = _table(columns, widths)
    for row in cells:
        table.add_row(*(Text(v) for v in row))
    total = sum(widths) + GAP * (len(widths) - 1) + indent
    renderable = Padding(table, (0, 0, 0, indent), expand=False) if indent else table
    narrow = console.width
    console.width = max(total, narrow)  # print() never goes past the console's own width
    try:
        console.print(renderable, crop=False)
    finally:
        console.width = narrow


def _print_records(
    console: Console,
    columns: Sequence[Column],
    cells: Sequence[Sequence[str]],
    width: int,
    indent: int,
) -> None:
    """One small block per row, ``header: value`` a line: for tables too wide to lay out."""
    pad = " " * indent
    for row in cells:
        for i, (column, value) in enumerate(zip(columns, row, strict=True)):
            lead = f"{pad}{'' if i == 0 else '  '}{column.header}: "
            if column.wrap:
                lines = clip(value, max(width - cell_len(lead) + indent, 16), column.wrap)
            else:
                lines = [value]
            console.print(Text(lead + lines[0]), highlight=False, crop=False, soft_wrap=True)
            for line in lines[1:]:
                console.print(Text(" " * cell_len(lead) + line), highlight=False, soft_wrap=True)


def print_fields(console: Console, fields: dict[str, Any], *, indent: int = 0) -> None:
    """``name: value`` lines, names right-aligned, long values wrapped under themselves."""
    label = max((cell_len(k) for k in fields), default=0)
    hang = indent + label + 2
    room = max(console.width - hang, 20)
    for name, value in fields.items():
        shown = printable(value)
        lines = [shown] if is_wide(console) else clip(shown, room, 0)
        console.print(
            Text(f"{' ' * indent}{name:>{label}}: {lines[0]}"), highlight=False, crop=False
        )
        for line in lines[1:]:
            console.print(Text(" " * hang + line), highlight=False, crop=False)


def print_wrapped(console: Console, value: str, *, indent: int = 0, hang: int = 2) -> None:
    """A long line of plain text wrapped at word boundaries, its continuation indented."""
    first, rest = " " * indent, " " * (indent + hang)
    width = None if is_wide(console) else console.width
    lines = (
        [first + printable(value)]
        if width is None
        else textwrap.wrap(
            printable(value),
            width,
            initial_indent=first,
            subsequent_indent=rest,
            break_on_hyphens=False,
        )
    )
    for line in lines:
        console.print(Text(line), highlight=False, crop=False)
