"""`ehr-bridge demo`: run the whole flow against the built-in simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ehr_bridge.cli.context import EXIT_FAILED
from ehr_bridge.demo import DemoResult, run_demo


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
    verdict = "[green]nothing missing, nothing duplicated[/green]"
    if not result.complete:
        verdict = f"[red]{result.missing} missing, {result.duplicates} duplicated[/red]"
    console.print(f"  checked against the simulator's own records: {verdict}")
    console.print(f"  quarantined: {len(result.quarantined)}")
    for entry in result.quarantined:
        console.print(f"    {entry['record']}: {entry['reason']}")
    config = result.workdir / "ehr-bridge.toml"
    console.print()
    console.print("[bold]Try next[/bold]")
    for command in (
        "status",
        "referrals list",
        "quarantine list",
        "outbox list --state done",
    ):
        console.print(f"  .venv/bin/ehr-bridge --config {config} {command}")
    console.print(f"  the simulator's final records: {result.workdir / 'trust-export.json'}")
