"""``ehr-bridge sim serve-pcmis``: the PC-MIS-style simulator in the foreground.

The API key is read from an environment variable named on the command line, never given on
the command line itself, where it would land in shell history and ``ps``.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from ehr_bridge.errors import ConfigError
from ehr_bridge.sim.pcmis.server import API
from ehr_bridge.sim.pcmis.simulator import DEFAULT_API_KEY, PcmisSimulator

logger = logging.getLogger(__name__)

#: where ``serve-pcmis`` looks for the key unless told otherwise (a variable name, not a key)
KEY_ENV = "EHR_BRIDGE_PCMIS_KEY"
#: the CLI's exit code for a configuration problem (here: the port cannot be bound)
EXIT_CONFIG = 2


def serve_pcmis(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 8766,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic caseload.")] = 1,
    referrals: Annotated[
        int, typer.Option(min=0, help="Referrals referred on to the provider (plus others).")
    ] = 20,
    hostile: Annotated[int, typer.Option(min=0, help="Extra malformed referrals.")] = 0,
    provider_code: Annotated[str, typer.Option(help="Provider code referred on to.")] = "IESO01",
    key_env: Annotated[
        str, typer.Option(help="Environment variable holding the API key (X-API-Key).")
    ] = KEY_ENV,
) -> None:
    """Serve the PC-MIS-style trust API (a second dialect, for the rest adapter) until Ctrl-C."""
    key = os.environ.get(key_env) or DEFAULT_API_KEY
    simulator = PcmisSimulator(
        seed=seed, referrals=referrals, hostile=hostile, provider_code=provider_code, api_key=key
    )
    try:
        simulator.serve_forever(host, port, on_ready=_announce)
    except ConfigError as exc:
        typer.echo(f"error: {exc.safe_message}", err=True)
        raise typer.Exit(EXIT_CONFIG) from exc
    typer.echo("PC-MIS-style simulator stopped.")


def _announce(base_url: str) -> None:
    typer.echo(f"PC-MIS-style simulator serving at {base_url} (API base {base_url}{API})")
    logger.info("pcmis simulator listening")
