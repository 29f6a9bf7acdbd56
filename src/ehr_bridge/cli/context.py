"""What every command shares: the config path, lazily loaded config and store, output."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ehr_bridge.cli import tables
from ehr_bridge.cli.screen import Screen
from ehr_bridge.cli.text import markup_safe
from ehr_bridge.config import DEFAULT_CONFIG_NAME, AppConfig, load_config
from ehr_bridge.errors import ConfigError
from ehr_bridge.security.keyring import open_store
from ehr_bridge.store import Store

#: exit codes are part of the CLI's contract (see docs/cli.md)
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_NOT_FOUND = 3


@dataclass
class CliContext:
    """Per-invocation state, passed through ``ctx.obj`` (no globals)."""

    config_path: Path | None = None
    _config: AppConfig | None = None
    _store: Store | None = None
    #: ``--wide``: every table column whole and unwrapped
    wide: bool = False
    console: Screen = field(init=False)

    def __post_init__(self) -> None:
        self.console = Screen(wide=self.wide)

    def config(self) -> AppConfig:
        """The validated config: ``--config``, else $EHR_BRIDGE_CONFIG, else ./ehr-bridge.toml.

        A problem with it ends the command with exit 2 (``EXIT_CONFIG``), which the systemd
        unit does not restart on (``RestartPreventExitStatus``).
        """
        if self._config is None:
            path = self.config_path or Path(
                os.environ.get("EHR_BRIDGE_CONFIG", DEFAULT_CONFIG_NAME)
            )
            try:
                self._config = load_config(path)
            except ConfigError as exc:
                raise config_error(exc) from None
            self.console.zone = self._config.display.zone()
        return self._config

    def store(self) -> Store:
        """The state store named in the config, opened with its keyring.

        A missing or wrong key (or a schema to upgrade first) ends the command with exit 2,
        naming the config key and, for a missing key, its id: restarting cannot fix it.
        """
        if self._store is None:
            config = self.config()
            try:
                self._store = open_store(config)
            except ConfigError as exc:
                raise config_error(exc) from None
        return self._store

    def close(self) -> None:
        """Release the database."""
        if self._store is not None:
            self._store.close()


def obj(ctx: typer.Context) -> CliContext:
    """The shared context of this invocation."""
    value = ctx.find_root().obj
    if not isinstance(value, CliContext):
        value = CliContext()
        ctx.find_root().obj = value
    return value


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print an error to stderr and return the Exit to raise (``[database]`` stays as it is)."""
    console = Console(stderr=True, soft_wrap=True)
    console.print(f"[red]error:[/red] {markup_safe(message)}", highlight=False)
    return typer.Exit(code)


def config_error(exc: ConfigError) -> typer.Exit:
    """A configuration problem: say which key, exit 2."""
    return fail(f"configuration: {exc.safe_message}", EXIT_CONFIG)


def print_json(data: Any) -> None:
    """Machine-readable output for scripts."""
    typer.echo(json.dumps(data, indent=2, default=str, sort_keys=True))


def print_table(
    console: Console,
    title: str | None,
    columns: Sequence[str | tables.Column],
    rows: Sequence[Sequence[Any]],
    *,
    indent: int = 0,
) -> None:
    """A table for people, laid out for the console's width (``cli.tables``).

    A column named by a bare string is printed whole; ``tables.text`` columns wrap and
    ``tables.optional`` ones are left out first when the table would not fit.
    """
    tables.print_table(console, title, columns, rows, indent=indent)
