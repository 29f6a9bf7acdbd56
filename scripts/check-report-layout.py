#!/usr/bin/env python3
"""Check an ehr-bridge HTML report's layout in headless Chromium: no label on another.

Why: a chart label drawn over a line or over another label (the "3/7" once printed on the
50% recovery line) is only visible once a browser lays the page out with real fonts. This
loads a copy of the page with one measuring script added, in headless Chromium with the
network made unreachable, and reads back what the script wrote into the DOM
(``--dump-dom``): the box of every chart text (label, title, legend), bar (``rect.bar``) and
reference or marker line (``line.rule``) as the browser drew them, and the page's
sections and table headings. It reports

- labels that overlap another label, a bar, or a line, and labels outside their chart;
- tables with an empty or repeated column heading;
- a connection without its headline, or a page without its glossary.

    scripts/check-report-layout.py demo-run/report.html          # findings, exit 1 if any
    scripts/check-report-layout.py demo-run/report.html --json   # everything measured

The copy differs from the page only by that script and a CSP that allows it
(``script-src 'unsafe-inline'``); ``default-src 'none'`` stays, so nothing is fetched.
Needs Chromium (Debian: ``apt-get install chromium``); set $CHROMIUM to use another binary.
Exit codes: 0 clean, 1 findings, 2 usage, no Chromium or no result. Standard library only.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
#: boxes may touch by this much (px) before they count as overlapping (anti-aliasing)
TOLERANCE = 0.5

MEASURE = r"""
(function () {
  const tolerance = TOLERANCE_PX;
  const box = (e) => { const r = e.getBoundingClientRect();
    return {l: r.left, t: r.top, r: r.right, b: r.bottom}; };
  const hits = (a, b) => a.l < b.r - tolerance && b.l < a.r - tolerance &&
    a.t < b.b - tolerance && b.t < a.b - tolerance;
  const crosses = (a, line) => line.l <= a.r - tolerance && a.l + tolerance <= line.r &&
    line.t <= a.b - tolerance && a.t + tolerance <= line.b;
  const out = {charts: [], overlaps: [], outside: [], tables: [], connections: [],
               glossary: []};
  document.querySelectorAll("figure").forEach((figure) => {
    const svg = figure.querySelector("svg");
    if (!svg) return;
    const frame = box(svg);
    const labels = [...svg.querySelectorAll("text")].map((e) => ({text: e.textContent,
      box: box(e)}));
    const bars = [...svg.querySelectorAll("rect.bar")].map((e) => box(e));
    const rules = [...svg.querySelectorAll("line.rule")].map((e) => box(e));
    const chart = {id: figure.id, labels: labels.length, bars: bars.length,
                   rules: rules.length};
    out.charts.push(chart);
    labels.forEach((a, i) => {
      const b = a.box;
      if (b.l < frame.l - tolerance || b.r > frame.r + tolerance ||
          b.t < frame.t - tolerance || b.b > frame.b + tolerance)
        out.outside.push({chart: figure.id, label: a.text});
      labels.slice(i + 1).forEach((c) => { if (hits(b, c.box))
        out.overlaps.push({chart: figure.id, label: a.text, with: "label " + c.text}); });
      if (bars.some((bar) => hits(b, bar)))
        out.overlaps.push({chart: figure.id, label: a.text, with: "a bar"});
      if (rules.some((rule) => crosses(b, rule)))
        out.overlaps.push({chart: figure.id, label: a.text, with: "a line"});
    });
  });
  document.querySelectorAll("table").forEach((table, index) => {
    const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    const section = table.closest("section");
    out.tables.push({index: index, section: section ? section.id : "", headings: heads,
      empty: heads.filter((h) => !h).length,
      repeated: heads.filter((h, i) => h && heads.indexOf(h) !== i)});
  });
  document.querySelectorAll("section[id^='connection-']").forEach((section) => {
    const headline = section.querySelector(".headline");
    const lines = headline ? [...headline.querySelectorAll("li")] : [];
    const shown = headline ? box(headline) : null;
    out.connections.push({id: section.id,
      headline: lines.map((li) => li.textContent),
      headline_visible: !!shown && shown.r - shown.l > 0 && shown.b - shown.t > 0,
      headings: [...section.querySelectorAll("h2")].map((h) => h.textContent),
      figures: [...section.querySelectorAll("figure")].map((f) => f.id)});
  });
  document.querySelectorAll("#glossary dt").forEach((dt) => out.glossary.push(dt.textContent));
  const pre = document.createElement("pre");
  pre.id = "layout-result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
""".replace("TOLERANCE_PX", str(TOLERANCE))


def find_chromium(explicit: str | None) -> str | None:
    """The browser binary: --chromium, $CHROMIUM, else the first candidate on PATH."""
    for name in (explicit, os.environ.get("CHROMIUM"), *CANDIDATES):
        if name and (found := shutil.which(name)):
            return found
    return None


def measured_page(page: str) -> str:
    """The page with the measuring script, and a CSP that lets only inline script in."""
    allowed = f"{CSP}; script-src 'unsafe-inline'"
    page = page.replace(f'content="{CSP}"', f'content="{allowed}"', 1)
    return page.replace("</body>", f"<script>{MEASURE}</script></body>", 1)


def measure(browser: str, page: Path) -> dict[str, Any]:
    """Load ``page`` with the script in headless Chromium; what the script wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "measured.html"
        copy.write_text(measured_page(page.read_text("utf-8")), "utf-8")
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--proxy-server=http://127.0.0.1:9",
            "--run-all-compositor-stages-before-draw",
            "--virtual-time-budget=5000",
            "--window-size=1100,2400",
            "--dump-dom",
            copy.resolve().as_uri(),
        ]
        # a fixed argument list (no shell); the binary is the one the user chose or PATH finds
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    found = re.search(r'<pre id="layout-result">(.*?)</pre>', done.stdout, re.S)
    if done.returncode != 0 or found is None:
        sys.stderr.write(done.stderr[-2000:])
        raise SystemExit(2)
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result


def findings(result: dict[str, Any]) -> list[str]:
    """What is wrong with the layout, one line each (empty: nothing)."""
    lines = [f"{o['chart']}: label {o['label']!r} overlaps {o['with']}" for o in result["overlaps"]]
    lines += [f"{o['chart']}: label {o['label']!r} is outside the chart" for o in result["outside"]]
    for table in result["tables"]:
        where = f"table {table['index']} ({table['section'] or 'page'})"
        if table["empty"]:
            lines.append(f"{where}: {table['empty']} column(s) without a heading")
        if table["repeated"]:
            lines.append(f"{where}: repeated heading(s) {table['repeated']}")
    for connection in result["connections"]:
        if not connection["headline"] or not connection["headline_visible"]:
            lines.append(f"{connection['id']}: no headline")
    if not result["connections"]:
        lines.append("no connection section")
    if not result["glossary"]:
        lines.append("no glossary")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, measure, report; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="the HTML page from `ehr-bridge report`")
    parser.add_argument("--json", action="store_true", help="print everything measured")
    parser.add_argument("--chromium", help="browser binary (default: $CHROMIUM or PATH)")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"no such report: {args.report}", file=sys.stderr)
        return 2
    browser = find_chromium(args.chromium)
    if browser is None:
        print("chromium not found (apt-get install chromium, or set $CHROMIUM)", file=sys.stderr)
        return 2
    result = measure(browser, args.report)
    problems = findings(result)
    if args.json:
        print(json.dumps({**result, "findings": problems}, indent=2))
    else:
        for line in problems:
            print(line)
        charts = len(result["charts"])
        print(f"{charts} charts, {len(result['tables'])} tables: {len(problems)} finding(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
