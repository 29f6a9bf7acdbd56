"""`ehr-bridge db`: the state database's schema (upgrade is an explicit step on PostgreSQL)."""

from __future__ import annotations

from typing import Annotated

import typer

from ehr_bridge.cli.context import config_error, obj, print_json
from ehr_bridge.errors import ConfigError
from ehr_bridge.store.migrate import current_revision, head_revision, upgrade
from ehr_bridge.store.store import make_engine

app = typer.Typer(help="The state database: schema version and upgrades.", no_args_is_help=True)


def _url(ctx: typer.Context) -> str:
    try:
        return obj(ctx).config().database_url()
    except ConfigError as exc:
        raise config_error(exc) from None


@app.command("upgrade")
def upgrade_command(ctx: typer.Context) -> None:
    """Apply every pending migration (stop the daemons first on a shared PostgreSQL)."""
    engine = make_engine(_url(ctx))
    try:
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    if before == after:
        typer.echo(f"schema already at {after}")
    else:
        typer.echo(f"schema upgraded from {before or 'empty'} to {after}")


@app.command("current")
def current_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The schema version of the database and the one this version of ehr-bridge needs."""
    engine = make_engine(_url(ctx))
    try:
        data = {"current": current_revision(engine), "head": head_revision()}
    finally:
        engine.dispose()
    data_ok = data["current"] == data["head"]
    if as_json:
        print_json({**data, "up_to_date": data_ok})
        return
    typer.echo(f"database at {data['current'] or 'empty'}; this version needs {data['head']}")
    if not data_ok:
        typer.echo("run `ehr-bridge db upgrade`")
