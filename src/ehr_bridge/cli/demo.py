"""`ehr-bridge demo`: run the whole flow against the built-in simulator."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ehr_bridge.cli.context import EXIT_FAILED
from ehr_bridge.config import load_config
from ehr_bridge.demo import CONNECTION, DemoResult, run_demo
from ehr_bridge.reports import options_from_config, render_page, reports_from_store, summary_lines
from ehr_bridge.security.files import write_private
from ehr_bridge.security.keyring import open_store


def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for state, config, provider files.")] = Path(
        "demo-run"
    ),
    seed: Annotated[int, typer.Option(help="Seed for the synthetic data.")] = 1,
    referrals: Annotated[int, typer.Option(help="Good referrals the simulator seeds.")] = 50,
    hostile: Annotated[int, typer.Option(help="Malformed referrals it adds.")] = 5,
) -> None:
    """Start the simulator, run cycles until everything is written back, report."""
    console = Console(highlight=False, soft_wrap=True)
    result = run_demo(workdir, seed=seed, referrals=referrals, hostile=hostile, say=console.print)
    _report(console, result)
    if not result.complete:
        raise typer.Exit(EXIT_FAILED)


def _report(console: Console, result: DemoResult) -> None:
    console.print()
    console.print(f"[bold]What happened[/bold] ({result.cycles} cycles)")
    console.print(
        f"  referrals pulled and delivered: {result.delivered} of {result.good_referrals}"
    )
    for label in ("care contacts", "notes", "scores"):
        console.print(
            f"  {label} in the trust record: {result.at_trust[label]}"
            f" (the platform produced {result.expected[label]})"
        )
    console.print(
        f"  risk alerts in the trust record: {result.at_trust['risk alerts']}"
        f" (PHQ-9 answers with item 9 above zero: {result.expected['risk alerts']};"
        " see `risk list`)"
    )
    verdict = "[green]nothing missing, nothing duplicated[/green]"
    if not result.complete:
        verdict = f"[red]{result.missing} missing, {result.duplicates} duplicated[/red]"
    console.print(f"  checked against the simulator's own records: {verdict}")
    console.print(f"  quarantined: {len(result.quarantined)}")
    for entry in result.quarantined:
        console.print(f"    {entry['record']}: {entry['reason']}")
    _outcomes(console, result.workdir)
    config = result.workdir / "ehr-bridge.toml"
    console.print()
    console.print("[bold]Try next[/bold]")
    for command in (
        "status",
        "referrals list",
        "quarantine list",
        "risk list",
        "outbox list --state done",
        "report all",
        "report outcomes --csv",
    ):
        console.print(f"  .venv/bin/ehr-bridge --config {config} {command}")
    console.print(f"  the simulator's final records: {result.workdir / 'trust-export.json'}")


def _outcomes(console: Console, workdir: Path) -> None:
    """The national outcome figures on what the demo wrote, and the HTML report beside it."""
    config = load_config(workdir / "ehr-bridge.toml")
    store = open_store(config)
    try:
        options = options_from_config(config.reports)
        risk = config.get_connection(CONNECTION).risk
        reports = reports_from_store(store, CONNECTION, options, risk=risk)
    finally:
        store.close()
    page = workdir / "report.html"
    write_private(page, render_page([reports], datetime.now(UTC)))
    console.print()
    console.print("[bold]Outcomes[/bold] (national NHS Talking Therapies definitions)")
    for line in summary_lines(reports):
        console.print(f"  {escape(line)}")
    console.print(f"  charts and tables: {page}")
