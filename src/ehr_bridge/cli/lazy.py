"""Commands imported when they are run, so that starting the CLI costs little.

A command module imports what its command needs: the store and SQLAlchemy, pydantic
models, the FHIR library, the adapters. Imported at start, for every command, they made
``ehr-bridge --help`` cost more than a second of CPU. The root group here names each
command by ``"module:attribute"`` (a Typer sub-app or a command function) and imports
it only when the command is looked up to run: ``ehr-bridge status`` imports the status
command's module and none of the others'. The root's own help lists every command from
the one line it is given here, without importing any of them (a test checks the lines
against the commands' own help, so they cannot drift).

The pattern is click's "lazily loading subcommands", plus the one-line summaries.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from ehr_bridge.runtime import resume_collector

if TYPE_CHECKING:
    from typer import _click


@dataclass(frozen=True)
class Lazy:
    """A command of the root group, imported when it is run.

    Attributes:
        target: ``"module:attribute"``, a ``typer.Typer`` sub-app or a command function.
        summary: the line ``ehr-bridge --help`` shows for it (the first paragraph of the
            command's own help).
        options: for a sub-app, what ``Typer.add_typer`` would be given besides the name
            (``help``, ``no_args_is_help``).
    """

    target: str
    summary: str
    options: dict[str, Any] = field(default_factory=dict)

    def load(self, name: str) -> _click.Command:
        """Import the target and make it the click command ``name``."""
        module, _, attribute = self.target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
        holder = typer.Typer()
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=name, **self.options)
        else:
            holder.command(name)(target)
        return typer.main.get_group(holder).commands[name]

    def placeholder(self, name: str) -> _click.Command:
        """What the root's help lists for the command, without importing it."""
        return TyperCommand(name, help=self.summary)


class _Commands(MutableMapping[str, "_click.Command"]):
    """The root's commands: the ones already built, then the lazy ones, loaded on lookup."""

    def __init__(self, built: MutableMapping[str, _click.Command], lazy: dict[str, Lazy]) -> None:
        self._built = dict(built)
        self._lazy = lazy

    def __getitem__(self, name: str) -> _click.Command:
        if name not in self._built:
            self._built[name] = self._lazy[name].load(name)
            resume_collector()
        return self._built[name]

    def __setitem__(self, name: str, command: _click.Command) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        self._built.pop(name, None)
        self._lazy = {k: v for k, v in self._lazy.items() if k != name}

    def __contains__(self, name: object) -> bool:
        return name in self._built or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        yield from self._built
        yield from (name for name in self._lazy if name not in self._built)

    def __len__(self) -> int:
        return len(set(self._built) | set(self._lazy))

    def is_loaded(self, name: str) -> bool:
        """Whether ``name`` has been imported (or was never lazy)."""
        return name in self._built


class LazyGroup(TyperGroup):
    """A Typer group whose ``lazy`` commands are imported only when one is run.

    Subclass it with ``lazy`` set and pass the subclass as ``typer.Typer(cls=...)``.
    """

    lazy: ClassVar[dict[str, Lazy]] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = self._commands = _Commands(self.commands, self.lazy)
        self._listing = False

    def list_commands(self, ctx: _click.Context) -> list[str]:
        """Every command's name, in the order given (nothing is imported)."""
        return list(self._commands)

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        """The command to run, imported now; while the help is written, its summary."""
        if cmd_name not in self._commands:
            return None
        if self._listing and not self._commands.is_loaded(cmd_name):
            return self.lazy[cmd_name].placeholder(cmd_name)
        return self._commands[cmd_name]

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """The root's help, listing the commands by their summaries."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
