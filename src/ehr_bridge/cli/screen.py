"""Where the CLI prints for people: the width it lays tables out to, ``--wide``, the zone.

- On a terminal, tables fit its width. Output that is not a terminal (piped into ``less``,
  ``grep`` or a file, or captured by a test) is laid out for 80 columns, the width of a
  default SSH session, unless ``COLUMNS`` says otherwise.
- ``--wide`` (anywhere on the command line, or ``EHR_BRIDGE_WIDE=1``) prints every column
  whole and unwrapped, however wide that makes a line.
- Times are printed to the second in the display zone (``[display] timezone``, by default
  Europe/London), never with microseconds. ``--json`` is not affected by any of this.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console

from ehr_bridge.config import DEFAULT_DISPLAY_ZONE

#: the width for output that is not a terminal, unless COLUMNS is set
PIPED_WIDTH = 80


class Screen(Console):
    """A rich Console that knows the layout wanted (``wide``) and the display zone."""

    def __init__(
        self,
        *,
        wide: bool = False,
        zone: ZoneInfo | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        super().__init__(width=None if sys.stdout.isatty() else piped_width(env))
        self.wide = wide
        self.zone = zone or ZoneInfo(DEFAULT_DISPLAY_ZONE)


def piped_width(environ: Mapping[str, str]) -> int:
    """``COLUMNS`` when it is a positive number, else 80."""
    columns = environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH


def zone_of(console: Console | None) -> ZoneInfo:
    """The zone ``console`` prints times in (no console: the default zone)."""
    return console.zone if isinstance(console, Screen) else ZoneInfo(DEFAULT_DISPLAY_ZONE)


def is_wide(console: Console) -> bool:
    """True when every column is to be printed whole (``--wide``)."""
    return isinstance(console, Screen) and console.wide


def when(console: Console | None, value: Any) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS`` in the display zone; "" for none.

    Naive datetimes are UTC (how the store keeps them); a string is read as ISO 8601 and
    printed as it is if it is not one.
    """
    moment = as_datetime(value)
    if moment is None:
        return "" if value is None else str(value)
    return moment.astimezone(zone_of(console)).strftime("%Y-%m-%d %H:%M:%S")


def day(console: Console | None, value: Any) -> str:
    """A time's date (``YYYY-MM-DD``) in the display zone; "" for none."""
    moment = as_datetime(value)
    return moment.astimezone(zone_of(console)).strftime("%Y-%m-%d") if moment else ""


def as_datetime(value: Any) -> datetime | None:
    """``value`` as an aware datetime (naive: UTC), or None when it is not a time."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def zone_label(console: Console) -> str:
    """How a table title names the zone its times are in."""
    return f"times {zone_of(console)}"
