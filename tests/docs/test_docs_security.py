"""docs/security.md's controls table cites its proof by test name: every cited test must exist.

The table is what a trust's information governance lead reads as evidence, so a control
whose test was renamed or deleted must fail here, not go on claiming a proof. Citations
are written as in the table: ``tests/<path>.py::test_name``, ``test_security_x.py::name``
(a file in tests/security), ``::name`` (the file cited last in the same cell), or a file or
folder alone. Every row must cite at least one test that exists.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
#: the guarantees issue 15 added last; each has its own row
ISSUE_15_ROWS = (
    "no proxy from the environment",
    "files and folders private",
    "key files open to others reported",
    "retention of kept files",
    "MLLP connect bounded",
    "ids the trust returns have an id's shape",
    "alerts cannot stall",
    "no call hangs",
    "stop is honoured",
    "one connection never delays another",
    "no database yet is waited for",
    "one bad record never stops the others",
    "paging cannot loop",
    "one huge value in bounded memory",
    "a mapping file cannot exhaust the loader",
    "trust text inert on a terminal",
)


def _rows() -> dict[str, str]:
    """Control name -> the "tested in" cell, for every row of the controls table."""
    text = DOC.read_text("utf-8")
    table = text.split("## Controls and where each is tested", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and cells[0] not in ("control", "---|---|---"):
            rows[cells[0]] = cells[2]
    return rows


def _citations(cell: str) -> list[tuple[Path, str | None]]:
    """(file or folder, test name or None) for each citation in one cell, in order."""
    found: list[tuple[Path, str | None]] = []
    current: Path | None = None
    for token in re.findall(r"`([^`]+)`", cell):
        if not re.fullmatch(r"(tests/[\w/.]*|test_\w+\.py)?(::test_\w+)?", token) or not token:
            continue
        where, _, name = token.partition("::")
        if where:
            current = (
                ROOT / where if where.startswith("tests/") else ROOT / "tests/security" / where
            )
        assert current is not None, f"{token!r} names no file before it"
        found.append((current, name or None))
    return found


def _defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_test_the_controls_table_cites_exists() -> None:
    missing = []
    for control, cell in _rows().items():
        for path, name in _citations(cell):
            if not path.exists() or (name and name not in _defined_tests(path)):
                missing.append(f"{control}: {path.relative_to(ROOT)}::{name}")
    assert not missing, f"docs/security.md cites tests that do not exist: {missing}"


def test_every_control_cites_a_test() -> None:
    rows = _rows()
    assert len(rows) > 30, "the table was not found"
    bare = [control for control, cell in rows.items() if not _citations(cell)]
    assert bare == ["hostile input contained"]  # it points at the fuzzing section below


def test_each_guarantee_of_issue_15_has_its_row() -> None:
    rows = _rows()
    assert [row for row in ISSUE_15_ROWS if row not in rows] == []
    assert all(any(name for _, name in _citations(rows[row])) for row in ISSUE_15_ROWS)
