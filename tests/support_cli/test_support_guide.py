"""docs/support-guide.md stays true: every command and option it shows exists.

The steps themselves are replayed against the simulator by test_support_scenario.py;
this test catches a renamed command or option that would leave the guide stale.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from ehr_bridge.cli.app import app

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDE = DOCS / "support-guide.md"
#: options of the ehr-bridge command itself, taken before or after the command
GLOBAL = ("--wide",)
COMMAND = re.compile(r"(?:^|\$ |`)ehr-bridge ([a-z][a-z-]*(?=[ `\n]|$)[^`#\n]*)", re.MULTILINE)


def commands(text: str) -> list[list[str]]:
    found = []
    for match in COMMAND.finditer(text):
        words = shlex.split(match.group(1).strip().rstrip("`"))
        found.append([w for w in words if w not in ("...", *GLOBAL)])
    return found


def resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The (click) command the words name, and the words after it; groups have commands."""
    command: Any = typer.main.get_command(app)
    rest = list(words)
    while hasattr(command, "commands") and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    return command, rest


def options_of(command: Any) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


@pytest.mark.parametrize("words", commands(GUIDE.read_text("utf-8")), ids=" ".join)
def test_every_command_in_the_guide_exists(words: list[str]) -> None:
    command, rest = resolve(words)
    assert not hasattr(command, "commands"), f"no such command: {' '.join(words)}"
    unknown = {w for w in rest if w.startswith("--")} - options_of(command) - {"--help"}
    assert not unknown, f"{command.name} has no option {sorted(unknown)}"


def test_the_guide_covers_the_common_questions() -> None:
    text = GUIDE.read_text("utf-8")
    for question in ("note", "score", "two records", "stuck", "Who changed"):
        assert question in text
    shown = {resolve(words)[0].name for words in commands(text)}
    assert {"reconcile", "show", "retry", "link", "unlink", "list", "dismiss"} <= shown


def test_cli_doc_lists_every_support_command() -> None:
    text = (DOCS / "cli.md").read_text("utf-8")
    for command in ("reconcile", "patients show", "patients link", "patients unlink"):
        assert f"`{command}" in text
    for command in ("audit list", "quarantine retry", "quarantine dismiss"):
        assert f"`{command}" in text
