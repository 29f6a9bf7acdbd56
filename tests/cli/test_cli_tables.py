"""The table layout: ids whole at 80 columns, prose wrapped and bounded, --wide, the zone."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from ehr_bridge.cli import tables
from ehr_bridge.cli.app import app
from ehr_bridge.cli.screen import Screen, piped_width, when

runner = CliRunner()

IDS = [f"f38538e5-ee15-5d9b-b682-dc6a5c99{n:04d}" for n in range(3)]
REASON = (
    "record SR0000008, field patient.nhs_number: NHS number must be 10 digits (optionally"
    " grouped 3-3-4); the trust record also names a GP practice code that is not on the"
    " list the service was given, and a referral date after the date it was received, so"
    " it cannot be delivered until the trust corrects it"
)
COLUMNS: list[str | tables.Column] = [
    "id",
    tables.optional("connection", 2),
    "kind",
    tables.optional("delivered", 1),
    tables.text("reason", 3, min_width=24),
]


def rendered(
    width: int, *, wide: bool = False, columns: list[str | tables.Column] = COLUMNS
) -> str:
    screen = Screen(wide=wide, environ={"COLUMNS": str(width)})
    rows = [
        [i, "leeds-talking-therapies", "clinical_note", "2026-12-08 04:14:25", REASON] for i in IDS
    ]
    with screen.capture() as captured:
        tables.print_table(screen, "3 things", columns, rows)
    return captured.get()


def lines_of(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_at_80_columns_ids_stay_whole_and_the_reason_is_bounded() -> None:
    out = rendered(80)
    assert all(cell_len(line) <= 80 for line in lines_of(out)), out
    for value in IDS:
        assert sum(value in line.split() for line in lines_of(out)) == 1, out
    assert "…" in out and "connection" not in out.splitlines()[1]
    first_row = next(i for i, line in enumerate(lines_of(out)) if IDS[0] in line)
    second_row = next(i for i, line in enumerate(lines_of(out)) if IDS[1] in line)
    assert second_row - first_row == 3  # three lines of reason, then the next row
    assert "(not shown at 80 columns: connection, delivered; see --wide)" in out


def test_the_ellipsis_falls_at_a_word_boundary() -> None:
    lines = tables.clip(REASON, 30, 3)
    assert len(lines) == 3 and all(cell_len(line) <= 30 for line in lines)
    assert lines[-1].endswith("…")
    last_word = lines[-1][:-1].split()[-1]
    assert last_word.rstrip(",;:") in [w.rstrip(",;:") for w in REASON.split()]  # not a piece
    assert tables.clip("short", 30, 3) == ["short"]


def test_at_200_columns_everything_fits_on_one_line_each() -> None:
    out = rendered(200)
    assert "connection" in out and "delivered" in out and "not shown" not in out
    assert all(cell_len(line) <= 200 for line in lines_of(out))


def test_wide_prints_every_column_whole_whatever_the_width() -> None:
    out = rendered(60, wide=True)
    rows = [line for line in lines_of(out) if any(i in line for i in IDS)]
    assert len(rows) == 3 and all(REASON in row for row in rows)
    assert "…" not in out and "not shown" not in out


def test_needed_columns_that_cannot_fit_become_records_and_are_never_cut() -> None:
    columns: list[str | tables.Column] = ["id", "kind", "other id", "trust id"]
    screen = Screen(environ={"COLUMNS": "60"})
    rows = [[IDS[0], "clinical_note", IDS[1], "CN0000001"]]
    with screen.capture() as captured:
        tables.print_table(screen, None, columns, rows)
    out = captured.get()
    assert f"id: {IDS[0]}" in out and f"  other id: {IDS[1]}" in out and "…" not in out


def test_an_empty_table_says_so() -> None:
    screen = Screen(environ={"COLUMNS": "80"})
    with screen.capture() as captured:
        tables.print_table(screen, "0 things", COLUMNS, [])
    assert captured.get() == "0 things\n(none)\n"


def test_output_that_is_not_a_terminal_is_80_columns_unless_columns_says() -> None:
    assert piped_width({}) == 80 and piped_width({"COLUMNS": "200"}) == 200
    assert piped_width({"COLUMNS": "wide"}) == 80
    assert Screen(environ={}).width == 80  # pytest's standard output is not a terminal


def test_times_are_to_the_second_in_the_display_zone() -> None:
    screen = Screen(environ={})
    summer = datetime(2026, 7, 1, 8, 30, 15, 123456, tzinfo=UTC)
    assert when(screen, summer) == "2026-07-01 09:30:15"  # BST
    assert when(screen, summer.replace(month=12)) == "2026-12-01 08:30:15"  # GMT
    assert when(screen, "2026-07-01T08:30:15.5Z") == "2026-07-01 09:30:15"
    assert when(screen, summer.replace(tzinfo=None)) == "2026-07-01 09:30:15"  # naive is UTC
    assert when(screen, None) == ""
    screen.zone = ZoneInfo("UTC")
    assert when(screen, summer) == "2026-07-01 08:30:15"


@pytest.mark.parametrize("args", [["--wide", "adapters", "list"], ["adapters", "list", "--wide"]])
def test_wide_is_taken_before_or_after_the_command(args: list[str]) -> None:
    narrow = runner.invoke(app, ["adapters", "list"], env={"COLUMNS": "70"})
    wide = runner.invoke(app, args, env={"COLUMNS": "70"})
    assert narrow.exit_code == 0 and wide.exit_code == 0
    assert "see --wide" in narrow.stdout and "see --wide" not in wide.stdout
    names = [
        a["name"] for a in json.loads(runner.invoke(app, ["adapters", "list", "--json"]).stdout)
    ]
    for name in names:
        (row,) = [line for line in wide.stdout.splitlines() if line.startswith(f"{name} ")]
        assert "built-in" in row  # one line per adapter, the last column included
