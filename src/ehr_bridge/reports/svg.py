"""Bar charts as inline SVG text: no library, no script, no fonts or files to fetch.

The HTML report must open on a machine with no network, so every chart is drawn here as
plain SVG elements inside the page. One bar chart covers all three charts the report
needs: optional horizontal reference line (the 50% recovery standard), vertical markers
(the 6 and 18 week standards) and a shaded band (office hours). Every label is escaped.

Labels never sit on one another or on a line: the reference line is named in a legend in
the title row, not beside the line where bars reach; a label above a bar that would cross
the reference line goes above the line instead; a label wider than its bar's slot is left
out (its number is in the table under the chart) and axis labels are thinned to every
second (third...) bar when they would touch. Widths are estimated from the font size
(``text_width``, generous for digits and capitals), and the page test measures the real
boxes in Chromium (tests/reports/test_reports_html.py). Texts carry ``class="label"``,
bars ``class="bar"`` and the reference and marker lines ``class="rule"``, for that test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

WIDTH = 720
HEIGHT = 300
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 34, 48
AXIS = "#5b6770"
GRID = "#dde3e8"
BAND = "#eef3f7"
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', sans-serif\""
FONT_SIZE = 11
ABOVE_SIZE = 10
REFERENCE_COLOUR = "#b2182b"
#: the room kept between a label and a line or another label, in pixels
GAP = 3


def text_width(text: str, size: float = FONT_SIZE) -> float:
    """A generous estimate of a label's width: 0.65 em a character (digits are about 0.6)."""
    return len(text) * size * 0.65


@dataclass(frozen=True)
class Bar:
    """One bar: its axis label, its value (None = no data), colour and hover text."""

    label: str
    value: float | None
    colour: str
    hover: str = ""
    #: small text above the bar (e.g. "1 of 2"), so a zero-height bar still says something
    above: str = ""
    #: stacked segments bottom-up as (value, colour); empty means one segment of ``value``
    parts: tuple[tuple[float, str], ...] = ()


@dataclass(frozen=True)
class Chart:
    """A bar chart's content and decorations (indices are bar positions)."""

    chart_id: str
    title: str
    y_label: str
    bars: Sequence[Bar]
    percent: bool = False
    reference: tuple[float, str] | None = None
    markers: Sequence[tuple[int, str]] = field(default_factory=tuple)
    band: tuple[int, int, str] | None = None


@dataclass(frozen=True)
class _Frame:
    """Plot geometry: where the plot area sits and how values map to pixels."""

    count: int
    y_max: float

    @property
    def plot_width(self) -> float:
        return WIDTH - LEFT - RIGHT

    @property
    def plot_height(self) -> float:
        return HEIGHT - TOP - BOTTOM

    @property
    def slot(self) -> float:
        return self.plot_width / max(self.count, 1)

    def x(self, index: float) -> float:
        return LEFT + index * self.slot

    def y(self, value: float) -> float:
        return TOP + self.plot_height * (1 - value / self.y_max)


def nice_step(top: float, ticks: int = 5) -> float:
    """A round tick step (1, 2, 5 x 10^n) giving about ``ticks`` gridlines up to ``top``."""
    raw = max(top, 1e-9) / ticks
    power = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * power:
            return float(multiple * power)
    return float(10 * power)


def _step(chart: Chart, top: float) -> float:
    """Gridline step: 20% on percentages, whole numbers on counts."""
    return 20.0 if chart.percent else max(1.0, nice_step(top))


def _y_max(chart: Chart) -> float:
    if chart.percent:
        return 110.0  # gridlines stop at 100%; the headroom keeps labels off the title
    values = [b.value for b in chart.bars if b.value is not None]
    top = max([*values, chart.reference[0] if chart.reference else 0.0, 1.0]) * 1.1
    step = _step(chart, top)
    return math.ceil(top / step) * step


def render(chart: Chart) -> str:
    """The chart as an ``<svg>`` element with a title for screen readers."""
    frame = _Frame(count=len(chart.bars), y_max=_y_max(chart))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"'
        f' role="img" aria-labelledby="{chart.chart_id}-title" {FONT} font-size="11">',
        f'<title id="{chart.chart_id}-title">{escape(chart.title)}</title>',
        f'<text class="label" x="{LEFT}" y="18" font-size="14" font-weight="600"'
        f' fill="#1f2a30">{escape(chart.title)}</text>',
    ]
    if chart.band:
        parts.append(_band(frame, *chart.band))
    parts.extend(_grid(frame, chart))
    parts.extend(_bars(frame, chart))
    parts.extend(_markers(frame, chart))
    if chart.reference:
        parts.append(_reference(frame, chart, *chart.reference))
        parts.append(_legend(chart.reference[1]))
    parts.append("</svg>")
    return "\n".join(parts)


def _band(frame: _Frame, first: int, last: int, label: str) -> str:
    x0, x1 = frame.x(first), frame.x(last + 1)
    return (
        f'<rect x="{x0:.1f}" y="{TOP}" width="{x1 - x0:.1f}" height="{frame.plot_height:.1f}"'
        f' fill="{BAND}"/>' + _label((x0 + x1) / 2, TOP + 12, label, fill=AXIS)
    )


def _label(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "middle",
    fill: str = AXIS,
    extra: str = "",
) -> str:
    """One ``<text class="label">``, escaped."""
    return (
        f'<text class="label" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}"'
        f"{extra}>{escape(text)}</text>"
    )


def _grid(frame: _Frame, chart: Chart) -> list[str]:
    step = _step(chart, frame.y_max)
    lines, value = [], 0.0
    while value <= frame.y_max + 1e-9:
        y = frame.y(value)
        shown = f"{value:g}%" if chart.percent else f"{value:g}"
        lines.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            + _label(LEFT - 6, y + 4, shown, anchor="end")
        )
        value += step
    mid = TOP + frame.plot_height / 2
    lines.append(
        f'<text class="label" transform="translate(12 {mid:.1f}) rotate(-90)"'
        f' text-anchor="middle" fill="{AXIS}">{escape(chart.y_label)}</text>'
    )
    return lines


def _every(chart: Chart, slot: float) -> int:
    """Show every n-th axis label, so that neighbouring labels never touch."""
    widest = max((text_width(b.label) for b in chart.bars), default=0.0)
    return max(1, math.ceil((widest + 2 * GAP) / max(slot, 1e-9)))


def _bars(frame: _Frame, chart: Chart) -> list[str]:
    parts = []
    width = frame.slot * 0.72
    base = frame.y(0)
    every = _every(chart, frame.slot)
    for index, bar in enumerate(chart.bars):
        centre = frame.x(index + 0.5)
        if index % every == 0:
            parts.append(_label(centre, base + 19, bar.label))  # clear of the "0" tick
        if bar.value is None:
            if text_width("n/a", 9) + GAP <= frame.slot:
                parts.append(_label(centre, base - 4, "n/a", extra=' font-size="9"'))
            continue
        hover = escape(bar.hover or f"{bar.label}: {bar.value:g}")
        bottom = 0.0
        for value, colour in bar.parts or ((bar.value, bar.colour),):
            y0, y1 = frame.y(bottom), frame.y(bottom + value)
            parts.append(
                f'<rect class="bar" x="{centre - width / 2:.1f}" y="{y1:.1f}" width="{width:.1f}"'
                f' height="{y0 - y1:.1f}" fill="{colour}"><title>{hover}</title></rect>'
            )
            bottom += value
        if bar.above and text_width(bar.above, ABOVE_SIZE) + 2 * GAP <= frame.slot:
            y = _above_baseline(frame, chart, frame.y(bar.value))
            parts.append(
                _label(centre, y, bar.above, fill="#1f2a30", extra=f' font-size="{ABOVE_SIZE}"')
            )
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base:.1f}" y2="{base:.1f}" stroke="{AXIS}"/>'
    )
    return parts


def _above_baseline(frame: _Frame, chart: Chart, top: float) -> float:
    """Just above the bar; above the reference line instead when it would cross the line.

    A text box runs from about 0.95 em above its baseline to 0.25 em below it.
    """
    y = top - 4
    if chart.reference is None:
        return y
    value = chart.reference[0] * 100 if chart.percent else chart.reference[0]
    line = frame.y(value)
    box_top, box_bottom = y - 0.95 * ABOVE_SIZE, y + 0.25 * ABOVE_SIZE
    if box_top - GAP <= line + 1 and box_bottom + GAP >= line - 1:
        return line - 1 - GAP - 0.25 * ABOVE_SIZE
    return y


def _markers(frame: _Frame, chart: Chart) -> list[str]:
    parts = []
    for after, label in chart.markers:
        x = frame.x(after + 1)
        parts.append(
            f'<line class="rule" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{frame.y(0):.1f}"'
            f' stroke="#1f2a30" stroke-dasharray="4 3"/>'
            + _label(x - 4, TOP + 12, label, anchor="end", fill="#1f2a30")
        )
    return parts


def _reference(frame: _Frame, chart: Chart, value: float, label: str) -> str:
    """The reference line across the plot; its name is in the legend (``_legend``)."""
    y = frame.y(value * 100 if chart.percent else value)
    return (
        f'<line class="rule" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"'
        f' stroke="{REFERENCE_COLOUR}" stroke-width="1.5" stroke-dasharray="6 4">'
        f"<title>{escape(label)}</title></line>"
    )


def _legend(label: str) -> str:
    """The reference line's key, right-aligned in the title row, clear of every bar."""
    end = WIDTH - RIGHT
    start = end - text_width(label) - GAP * 2
    return (
        f'<line x1="{start - 24:.1f}" x2="{start:.1f}" y1="14" y2="14"'
        f' stroke="{REFERENCE_COLOUR}" stroke-width="1.5" stroke-dasharray="6 4"/>'
        + _label(end, 18, label, anchor="end", fill=REFERENCE_COLOUR)
    )
