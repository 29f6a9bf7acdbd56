"""Bar charts as inline SVG text: no library, no script, no fonts or files to fetch.

The HTML report must open on a machine with no network, so every chart is drawn here as
plain SVG elements inside the page. One bar chart covers all three charts the report
needs: optional horizontal reference line (the 50% recovery target), vertical markers (the
6 and 18 week standards) and a shaded band (office hours). Every label is escaped.
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
        f'<text x="{LEFT}" y="18" font-size="14" font-weight="600" fill="#1f2a30">'
        f"{escape(chart.title)}</text>",
    ]
    if chart.band:
        parts.append(_band(frame, *chart.band))
    parts.extend(_grid(frame, chart))
    parts.extend(_bars(frame, chart))
    parts.extend(_markers(frame, chart))
    if chart.reference:
        parts.append(_reference(frame, chart, *chart.reference))
    parts.append("</svg>")
    return "\n".join(parts)


def _band(frame: _Frame, first: int, last: int, label: str) -> str:
    x0, x1 = frame.x(first), frame.x(last + 1)
    return (
        f'<rect x="{x0:.1f}" y="{TOP}" width="{x1 - x0:.1f}" height="{frame.plot_height:.1f}"'
        f' fill="{BAND}"/><text x="{(x0 + x1) / 2:.1f}" y="{TOP + 12}" text-anchor="middle"'
        f' fill="{AXIS}">{escape(label)}</text>'
    )


def _grid(frame: _Frame, chart: Chart) -> list[str]:
    step = _step(chart, frame.y_max)
    lines, value = [], 0.0
    while value <= frame.y_max + 1e-9:
        y = frame.y(value)
        shown = f"{value:g}%" if chart.percent else f"{value:g}"
        lines.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{AXIS}">{shown}</text>'
        )
        value += step
    mid = TOP + frame.plot_height / 2
    lines.append(
        f'<text transform="translate(14 {mid:.1f}) rotate(-90)" text-anchor="middle"'
        f' fill="{AXIS}">{escape(chart.y_label)}</text>'
    )
    return lines


def _bars(frame: _Frame, chart: Chart) -> list[str]:
    parts = []
    width = frame.slot * 0.72
    base = frame.y(0)
    for index, bar in enumerate(chart.bars):
        centre = frame.x(index + 0.5)
        parts.append(
            f'<text x="{centre:.1f}" y="{base + 16:.1f}" text-anchor="middle" fill="{AXIS}">'
            f"{escape(bar.label)}</text>"
        )
        if bar.value is None:
            parts.append(
                f'<text x="{centre:.1f}" y="{base - 4:.1f}" text-anchor="middle"'
                f' fill="{AXIS}" font-size="9">n/a</text>'
            )
            continue
        top = frame.y(bar.value)
        hover = escape(bar.hover or f"{bar.label}: {bar.value:g}")
        bottom = 0.0
        for value, colour in bar.parts or ((bar.value, bar.colour),):
            y0, y1 = frame.y(bottom), frame.y(bottom + value)
            parts.append(
                f'<rect x="{centre - width / 2:.1f}" y="{y1:.1f}" width="{width:.1f}"'
                f' height="{y0 - y1:.1f}" fill="{colour}"><title>{hover}</title></rect>'
            )
            bottom += value
        if bar.above:
            parts.append(
                f'<text x="{centre:.1f}" y="{top - 4:.1f}" text-anchor="middle" fill="#1f2a30"'
                f' font-size="10">{escape(bar.above)}</text>'
            )
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base:.1f}" y2="{base:.1f}" stroke="{AXIS}"/>'
    )
    return parts


def _markers(frame: _Frame, chart: Chart) -> list[str]:
    parts = []
    for after, label in chart.markers:
        x = frame.x(after + 1)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{frame.y(0):.1f}" stroke="#1f2a30"'
            f' stroke-dasharray="4 3"/><text x="{x - 4:.1f}" y="{TOP + 12}" text-anchor="end"'
            f' fill="#1f2a30">{escape(label)}</text>'
        )
    return parts


def _reference(frame: _Frame, chart: Chart, value: float, label: str) -> str:
    y = frame.y(value * 100 if chart.percent else value)
    return (
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#b2182b"'
        f' stroke-width="1.5" stroke-dasharray="6 4"/><text x="{WIDTH - RIGHT}" y="{y - 5:.1f}"'
        f' text-anchor="end" fill="#b2182b">{escape(label)}</text>'
    )
