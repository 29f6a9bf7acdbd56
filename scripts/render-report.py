#!/usr/bin/env python3
"""Render an ehr-bridge HTML report, or one chart of it, to PNG with headless Chromium.

Why: the report must open in a browser with no network, and the README shows one of its
charts. This renders the real page offline (a dead proxy, so any fetch would fail) and
can check that the chart was drawn by counting pixels of a chart colour.

    scripts/render-report.py demo-run/report.html page.png
    scripts/render-report.py demo-run/report.html docs/images/report-hours.png --chart hours
    scripts/render-report.py report.html out.png --chart hours --check 08519c

Needs Chromium (Debian: ``apt-get install chromium``); set $CHROMIUM to use another binary.
Exit codes: 0 rendered (and the check passed), 1 check failed, 2 usage or no Chromium.
Standard library only, so it runs with any Python 3.11.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def find_chromium(explicit: str | None) -> str | None:
    """The browser binary: --chromium, $CHROMIUM, else the first candidate on PATH."""
    for name in (explicit, os.environ.get("CHROMIUM"), *CANDIDATES):
        if name and (found := shutil.which(name)):
            return found
    return None


def chart_page(page: str, chart: str) -> str:
    """A page holding only the chart's <figure> (id ``chart-...-<chart>``) and the styles."""
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    pattern = rf'<figure id="chart-[^"]*?{re.escape(chart)}">.*?</figure>'
    figure = re.search(pattern, page, re.S)
    if figure is None:
        raise SystemExit(f"no chart ending in {chart!r} in the page")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<style>{style.group(1) if style else ''}body{{margin:8px}}figure{{margin:0}}</style>"
        f"</head><body>{figure.group(0)}</body></html>"
    )


def screenshot(browser: str, page: Path, out: Path, size: tuple[int, int], scale: float) -> None:
    """Headless Chromium screenshot of a local file, with the network made unreachable."""
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--proxy-server=http://127.0.0.1:9",
        f"--force-device-scale-factor={scale}",
        f"--window-size={size[0]},{size[1]}",
        f"--screenshot={out.resolve()}",
        page.resolve().as_uri(),
    ]
    # a fixed argument list (no shell); the binary is the one the user chose or PATH finds
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)  # noqa: S603
    if done.returncode != 0 or not out.is_file():
        sys.stderr.write(done.stderr[-2000:])
        raise SystemExit(f"chromium failed (exit {done.returncode})")


def png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """Width, height, bytes per pixel and unfiltered RGB(A) rows of an 8-bit PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, header = 8, bytearray(), b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    if depth != 8 or colour not in (2, 6) or header[12] != 0:
        raise ValueError("only 8-bit, non-interlaced RGB/RGBA PNGs are supported")
    bpp = 3 if colour == 2 else 4
    return width, height, bpp, _unfilter(zlib.decompress(bytes(idat)), width, height, bpp)


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> bytes:
    stride, out, prev = width * bpp, bytearray(), bytearray(width * bpp)
    for row in range(height):
        kind = raw[row * (stride + 1)]
        line = bytearray(raw[row * (stride + 1) + 1 : (row + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                line[i] = (line[i] + _paeth(left, up, corner)) & 0xFF
        out += line
        prev = line
    return bytes(out)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def count_colour(png: Path, colour: str) -> int:
    """Pixels exactly of ``colour`` (hex RGB) in the PNG."""
    width, height, bpp, pixels = png_pixels(png.read_bytes())
    want = bytes.fromhex(colour.lstrip("#"))
    return sum(pixels[i : i + 3] == want for i in range(0, width * height * bpp, bpp))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, render, optionally check; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="the HTML page from `ehr-bridge report`")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--chart", help="only this chart: recovery, waits, hours or weekdays")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--scale", type=float, default=1.0, help="device pixel ratio")
    parser.add_argument("--check", metavar="RRGGBB", help="fail unless this colour is drawn")
    parser.add_argument("--chromium", help="browser binary (default: $CHROMIUM or PATH)")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"no such report: {args.report}", file=sys.stderr)
        return 2
    browser = find_chromium(args.chromium)
    if browser is None:
        print("chromium not found (apt-get install chromium, or set $CHROMIUM)", file=sys.stderr)
        return 2
    page = args.report
    size = (args.width or 1100, args.height or 2400)
    with tempfile.TemporaryDirectory() as tmp:
        if args.chart:
            page = Path(tmp) / "chart.html"
            page.write_text(chart_page(args.report.read_text("utf-8"), args.chart), "utf-8")
            size = (args.width or 736, args.height or 356)
        screenshot(browser, page, args.out, size, args.scale)
    print(f"wrote {args.out} ({size[0]}x{size[1]} at {args.scale}x)")
    if args.check:
        found = count_colour(args.out, args.check)
        print(f"{found} pixels of #{args.check.lstrip('#')}")
        return 0 if found else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
