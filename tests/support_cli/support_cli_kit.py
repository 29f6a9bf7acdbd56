"""A running bridge (simulator, SQLite, folder platform) driven through the real CLI."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from ehr_bridge.cli.app import app
from support.bridge import Bridge, running_bridge

runner = CliRunner()


@dataclass
class Cli:
    """``ehr-bridge --config <the bridge's config> ...`` through Typer's CliRunner."""

    bridge: Bridge

    def __call__(self, *args: str) -> Result:
        try:
            return runner.invoke(app, ["--config", str(self.bridge.config_path), *args])
        finally:
            _drop_cli_log_handlers()

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.exit_code in (0, 1), result.stderr
        return json.loads(result.stdout)

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        return result

    def referral_id(self, trust_referral_id: str) -> str:
        return str(self.json("referrals", "show", trust_referral_id)["id"])

    def audit(self, *args: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.json("audit", "list", *args)
        return entries


@contextmanager
def bridge_cli(workdir: Path, **options: Any) -> Iterator[Cli]:
    """A bridge that has settled (every referral delivered, every session written back)."""
    with running_bridge(workdir, **options) as bridge:
        bridge.settle()
        yield Cli(bridge)


def _drop_cli_log_handlers() -> None:
    """`sync` logs to the runner's stderr, which closes after the call: detach it again."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ehr_bridge", False):
            root.removeHandler(handler)


def trust_items(bridge: Bridge, trust_referral_id: str, kind: str) -> list[dict[str, Any]]:
    """What the simulated trust holds, straight from its state (not through ehr-bridge)."""
    items: list[dict[str, Any]] = bridge.simulator.state.list_items(trust_referral_id, kind)
    return items
