"""The clinical safety case cites its evidence by test name: every cited test must exist.

A control whose test was renamed or deleted has lost its proof; this keeps the hazard log
(docs/clinical-safety.md) honest as the code changes.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "clinical-safety.md"
CITATION = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")
HAZARDS = (
    "wrong patient",
    "wrong or unchecked score",
    "wrong measure",
    "lost or written twice",
    "wrong provider",
    "stale referral status",
    "wrong outcome figure",
    "disclosed",
    "risk is not seen in time",
)


def _citations() -> list[tuple[str, str]]:
    return CITATION.findall(DOC.read_text("utf-8"))


def _defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_every_cited_test_exists() -> None:
    missing = []
    for file, name in _citations():
        path = ROOT / file
        if not path.is_file() or name not in _defined_tests(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/clinical-safety.md cites tests that do not exist: {missing}"


def test_every_hazard_has_its_section_and_evidence() -> None:
    text = DOC.read_text("utf-8")
    sections = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
    assert len(sections) >= len(HAZARDS)
    for hazard in HAZARDS:
        section = next((s for s in sections if hazard in s.splitlines()[0].lower()), None)
        assert section is not None, f"no hazard section for {hazard!r}"
        for part in ("**Cause**", "**Effect**", "**Initial risk**", "**Residual risk**"):
            assert part in section, f"{hazard!r} lacks {part}"
        assert CITATION.search(section), f"{hazard!r} names no test as evidence"


def test_no_placeholder_is_left() -> None:
    assert not re.search(r"\b[A-Z]{4,}(?:_[A-Z]+)*\b(?=[.:,])", DOC.read_text("utf-8"))
