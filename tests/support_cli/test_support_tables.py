"""Every table at 80 and 200 columns: ids, kinds, states and actions printed whole.

The bridge runs for real (simulator, SQLite, folder platform) with quarantined records,
risks and a note deleted at the trust (so reconcile has a finding). Each table is printed
as piped output (not a terminal) with ``COLUMNS`` set; each line must fit, and every id,
kind, state and action the command's ``--json`` names must appear whole in the table (a
token of a line: never cut with an ellipsis, never broken over two lines). ``--wide``
shows every column; times have no microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from rich.cells import cell_len
from support_cli_kit import Cli, bridge_cli, runner, trust_items

from ehr_bridge.cli.app import app

Json = Any
#: a table's command, and the values of its --json that must appear whole
Spec = tuple[list[str], list[str], Callable[[Cli], list[str]]]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with bridge_cli(tmp_path_factory.mktemp("tables"), seed=8, referrals=3, hostile=2) as cli:
        first = sorted(r["trust_referral_id"] for r in cli.json("referrals", "list"))[0]
        note = trust_items(cli.bridge, first, "clinical_note")[0]
        cli.bridge.simulator.state.delete_item(first, "clinical_note", note["id"])
        yield cli


def printed(cli: Cli, width: int, *args: str) -> str:
    result = runner.invoke(
        app, ["--config", str(cli.bridge.config_path), *args], env={"COLUMNS": str(width)}
    )
    assert result.exit_code in (0, 1), (args, result.stdout, result.stderr)
    return result.stdout


def tokens(text: str) -> set[str]:
    return {t.strip(",;()") for t in re.split(r"\s+", text) if t}


def referral(cli: Cli) -> Json:
    return cli.json("referrals", "list")[0]


def _referrals(cli: Cli) -> list[str]:
    data = cli.json("referrals", "list")
    return [v for r in data for v in (r["id"], r["trust_referral_id"], r["status"])]


def _outbox(cli: Cli) -> list[str]:
    return [v for r in cli.json("outbox", "list") for v in (r["id"][:12], r["kind"], r["state"])]


def _quarantine(cli: Cli) -> list[str]:
    data = cli.json("quarantine", "list")
    assert data, "the hostile records were not quarantined"
    return [str(v) for e in data for v in (e["id"], e["source"], e["record"], e["field"])]


def _risks(cli: Cli) -> list[str]:
    data = cli.json("risk", "list", "--state", "all")
    return [v for r in data for v in (r["id"][:12], r["trust_referral_id"], r["level"], r["state"])]


def _audit(cli: Cli) -> list[str]:
    data = cli.json("audit", "list", "--limit", "30")
    return [v for e in data for v in (e["action"], e["outcome"] or e["action"])]


def _adapters(cli: Cli) -> list[str]:
    data = cli.json("adapters", "list")
    return [v for a in data for v in (a["name"], *a["roles"], *a["capabilities"])]


def _story(cli: Cli) -> list[str]:
    story = cli.json("referrals", "show", referral(cli)["id"])
    assert story["write_backs"]
    found = [story["id"]]
    for w in story["write_backs"]:
        found += [w["id"][:12], w["kind"], w["state"], w["trust_id"]]
    return found


def _patient(cli: Cli) -> list[str]:
    data = cli.json("patients", "show", referral(cli)["id"])
    return [data["id"], *(v for r in data["referrals"] for v in (r["id"], r["trust_referral_id"]))]


def _reconcile(cli: Cli) -> list[str]:
    findings = [f for r in cli.json("reconcile") for f in r["findings"] if f["state"] != "in_sync"]
    assert findings, "the deleted note is not found"
    return [v for f in findings for v in (f["kind"], f["state"], f["outbox_key"][:12])]


def _status(cli: Cli) -> list[str]:
    runs = cli.json("status")["demo-trust"]["last_runs"]
    return [*runs, "demo-trust"]


SPECS: dict[str, Spec] = {
    "status": (["status"], ["flow", "finished", "result", "counts"], _status),
    "referrals list": (
        ["referrals", "list"],
        ["id", "connection", "trust id", "status", "delivered", "written", "pending", "dead"],
        _referrals,
    ),
    "outbox list": (
        ["outbox", "list"],
        ["key", "kind", "state", "attempts", "trust id", "last error"],
        _outbox,
    ),
    "quarantine list": (
        ["quarantine", "list"],
        ["id", "connection", "source", "record", "field", "reason"],
        _quarantine,
    ),
    "risk list": (
        ["risk", "list", "--state", "all"],
        ["risk", "connection", "trust ref", "level", "state", "age", "alerts"],
        _risks,
    ),
    "audit list": (
        ["audit", "list", "--limit", "30"],
        ["when", "who", "action", "outcome", "referral", "outbox key", "trust id", "why"],
        _audit,
    ),
    "adapters list": (
        ["adapters", "list"],
        ["name", "serves", "capabilities", "description", "from"],
        _adapters,
    ),
    "patients show": (
        ["patients", "show", "@referral"],
        ["id", "trust id", "status", "belongs here"],
        _patient,
    ),
    "reconcile": (
        ["reconcile"],
        ["trust ref", "kind", "state", "key", "trust id", "fields", "repair / note"],
        _reconcile,
    ),
}


def _args(cli: Cli, args: list[str]) -> list[str]:
    return [referral(cli)["id"] if a == "@referral" else a for a in args]


@pytest.mark.parametrize("width", [80, 200])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_table_keeps_its_ids_whole(cli: Cli, name: str, width: int) -> None:
    args, _, expected = SPECS[name]
    out = printed(cli, width, *_args(cli, args))
    too_long = [line for line in out.splitlines() if cell_len(line.rstrip()) > width]
    assert not too_long, f"{name} at {width}: {too_long}"
    missing = sorted(set(expected(cli)) - tokens(out))
    assert not missing, f"{name} at {width}: not whole in\n{out}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_wide_shows_every_column(cli: Cli, name: str) -> None:
    args, headers, expected = SPECS[name]
    out = printed(cli, 80, "--wide", *_args(cli, args))
    header_lines = [line for line in out.splitlines() if all(h in line for h in headers[:2])]
    assert header_lines and all(h in header_lines[0] for h in headers), (name, out)
    assert "see --wide" not in out and not set(expected(cli)) - tokens(out)


def test_referrals_show_at_80_columns_keeps_keys_kinds_and_sessions_whole(cli: Cli) -> None:
    story = cli.json("referrals", "show", referral(cli)["id"])
    for width in (80, 200):
        out = printed(cli, width, "referrals", "show", story["id"])
        assert all(cell_len(line.rstrip()) <= width for line in out.splitlines()), out
        assert not set(_story(cli)) - tokens(out), out
        for w in story["write_backs"]:
            (row,) = [line for line in out.splitlines() if line.strip().startswith(w["id"][:12])]
            if w["kind"] != "referral_status":
                assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row), row  # its session


def test_times_are_printed_to_the_second_in_london_time(cli: Cli) -> None:
    outputs = [printed(cli, 200, *_args(cli, args)) for args, _, _ in SPECS.values()] + [
        printed(cli, 200, "referrals", "show", referral(cli)["id"])
    ]
    for out in outputs:
        assert not re.search(r"\d\d:\d\d:\d\d\.\d", out), out
        assert "+00:00" not in out and "UTC)" not in out
    assert "(times Europe/London)" in printed(cli, 80, "referrals", "list")


def test_a_reason_wraps_to_three_lines_at_most(cli: Cli) -> None:
    entries = cli.json("quarantine", "list")
    lines = printed(cli, 80, "quarantine", "list").splitlines()
    body = [line for line in lines[3:] if not line.startswith("(")]  # title, header, rule
    starts = [i for i, line in enumerate(body) if re.match(r"\s*\d+\s", line)]
    assert len(starts) == len(entries), lines
    heights = [end - start for start, end in zip(starts, [*starts[1:], len(body)], strict=True)]
    assert heights and max(heights) <= 3, lines
